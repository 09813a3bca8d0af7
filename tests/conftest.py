"""Shared fixtures: a private MLflow tracking store per test (or per session), never the user's."""

from __future__ import annotations

import os
import tempfile

import mlflow
import pytest

import steps  # noqa: F401  (sets TF_USE_LEGACY_KERAS before anything imports tensorflow)
from steps import contract
from tests.support.commands import entry_point_runs, mlflow_run
from tests.support.stores import store_in

# Anything logged outside the `tracking`/`session_store` fixtures lands here, never in the user's store.
STRAY_STORE = f"sqlite:///{tempfile.mkdtemp(prefix='rtdeploy-stray-')}/mlflow.db"
os.environ["MLFLOW_TRACKING_URI"] = STRAY_STORE
# Decoded image folders (steps.datasets.folder_cache) go here, never to the user's ~/.cache.
os.environ["RTDEPLOY_CACHE"] = tempfile.mkdtemp(prefix="rtdeploy-cache-")


@pytest.fixture(autouse=True)
def no_run_left_active():
    """A plain function that silently starts an MLflow run (e.g. by logging outside one) is a bug."""
    yield
    leaked = mlflow.active_run()
    if leaked is not None:
        mlflow.end_run()
        pytest.fail(f"the test left MLflow run {leaked.info.run_id} active")


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


@pytest.fixture(scope="session")
def first_main(session_store):
    """The README's main job, `mlflow run .` with every default, in a private store: (main run, train run)."""
    result = mlflow_run()
    assert result.returncode == 0, result.stderr[-3000:]
    (main,) = entry_point_runs("main")
    train = mlflow.get_run(main.data.tags[contract.TAG_STEP_RUN.format(step="train")])
    return main, train
