"""Shared fixtures: a private MLflow tracking store per test (or per session), never the user's."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import mlflow
import pytest
from mlflow.utils.mlflow_tags import MLFLOW_PROJECT_ENTRY_POINT

import steps  # noqa: F401  (sets TF_USE_LEGACY_KERAS before anything imports tensorflow)
from steps import contract

PROJECT = Path(__file__).resolve().parents[1]

# Anything logged outside the `tracking`/`session_store` fixtures lands here, never in the user's store.
STRAY_STORE = f"sqlite:///{tempfile.mkdtemp(prefix='rtdeploy-stray-')}/mlflow.db"
os.environ["MLFLOW_TRACKING_URI"] = STRAY_STORE


@pytest.fixture(autouse=True)
def no_run_left_active():
    """A plain function that silently starts an MLflow run (e.g. by logging outside one) is a bug."""
    yield
    leaked = mlflow.active_run()
    if leaked is not None:
        mlflow.end_run()
        pytest.fail(f"the test left MLflow run {leaked.info.run_id} active")


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


@pytest.fixture
def tracking(tmp_path, monkeypatch) -> str:
    """A fresh sqlite tracking store in tmp_path; returns its URI."""
    with store_in(tmp_path, monkeypatch) as uri:
        yield uri


@pytest.fixture(scope="session")
def session_store(tmp_path_factory):
    """One sqlite store shared by the slow end-to-end tests of a session."""
    with pytest.MonkeyPatch.context() as monkeypatch, store_in(tmp_path_factory.mktemp("store"), monkeypatch) as uri:
        yield uri


def run_command(args: list[str], timeout: float = 900) -> subprocess.CompletedProcess:
    """Run a command with this test's environment (tracking store, PATH); output captured."""
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=os.environ.copy())


def mlflow_run(*args: str, timeout: float = 900, experiment: str = contract.EXPERIMENT) -> subprocess.CompletedProcess:
    """`mlflow run <project> --env-manager local --experiment-name <experiment> <args>`, as README tells users to."""
    command = ["mlflow", "run", str(PROJECT), "--env-manager", "local", "--experiment-name", experiment]
    return run_command([sys.executable, "-m", *command, *args], timeout=timeout)


def entry_point_runs(entry_point: str):
    """Runs of an MLproject entry point in the current store, oldest first."""
    return mlflow.search_runs(
        search_all_experiments=True,
        filter_string=f"tags.`{MLFLOW_PROJECT_ENTRY_POINT}` = '{entry_point}'",
        order_by=["attributes.start_time ASC"],
        output_format="list",
    )


@pytest.fixture(scope="session")
def first_main(session_store):
    """The README's main job, `mlflow run .` with every default, in a private store: (main run, train run)."""
    result = mlflow_run()
    assert result.returncode == 0, result.stderr[-3000:]
    (main,) = entry_point_runs("main")
    train = mlflow.get_run(main.data.tags[contract.TAG_STEP_RUN.format(step="train")])
    return main, train
