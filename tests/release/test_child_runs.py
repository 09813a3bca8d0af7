"""Child runs start from the checkout, whatever folder the parent step was started in, and report their own
exit code to the parent step."""

from __future__ import annotations

import mlflow
import pytest

from steps import contract
from steps.parameters import _exit
from steps.release.child_runs import child_exit_code, project_dir
from tests.support.commands import PROJECT


def test_the_project_is_the_checkout_holding_mlproject_from_any_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no MLproject here
    project_dir.cache_clear()
    try:
        assert project_dir() == PROJECT.resolve()
    finally:
        project_dir.cache_clear()


def test_a_childs_own_exit_code_survives_mlflow_run_turning_every_failure_into_1(tracking, monkeypatch):
    """A gate refusal (3) or a mistake (2) is put on the child's run as it exits; the parent reads it back."""
    with mlflow.start_run() as refused, mlflow.start_run(nested=True) as crashed:
        pass
    monkeypatch.setenv("MLFLOW_RUN_ID", refused.info.run_id)
    with pytest.raises(SystemExit) as exited:
        _exit(contract.EXIT_REFUSED, "register: refused by the gate: worse than the champion")
    assert exited.value.code == contract.EXIT_REFUSED
    assert child_exit_code(refused.info.run_id, contract.EXIT_FAILURE) == contract.EXIT_REFUSED
    assert child_exit_code(crashed.info.run_id, contract.EXIT_FAILURE) == contract.EXIT_FAILURE  # no tag: as said
    assert child_exit_code(refused.info.run_id, contract.EXIT_OK) == contract.EXIT_OK
