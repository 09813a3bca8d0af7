"""A private MLflow tracking store for a test, never the user's."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import mlflow


@contextlib.contextmanager
def store_in(folder: Path, monkeypatch):
    """A sqlite tracking store in `folder` for this process and its children; the previous one after."""
    previous = mlflow.get_tracking_uri()
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    # As when this interpreter's virtualenv is activated: `mlflow run --env-manager local`
    # runs the `python` it finds first on PATH.
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.chdir(folder)  # the store's default artifact root (./mlruns) lands here too
    mlflow.set_tracking_uri(uri)
    try:
        yield uri
    finally:  # the store in use before (a session's shared one, or the stray one), not a fixed default
        mlflow.set_tracking_uri(previous)
