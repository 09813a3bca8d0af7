"""Entry points run as child runs of the active run, as `main`, `update` and `autopilot` run theirs.

A child whose entry point, parameters (compared as the strings MLflow stores)
and git commit match a FINISHED run of this experiment is not run again: that
run is reused. Child runs get the same --env-manager as this run (MLflow does
not pass it on by itself, mlflow#11849). A child that exits non-zero raises
StepFailed with its exit code, so a gate refusal (3) is told from a failure.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import mlflow
from mlflow.entities import Run
from mlflow.utils.git_utils import get_git_commit
from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT, MLFLOW_PROJECT_ENTRY_POINT
from mlflow.utils.string_utils import quote

from steps import contract
from steps.parameters import StepFailed
from steps.settings import AUTO


@functools.cache
def project_dir() -> Path:
    """The folder holding MLproject: this checkout, or the working directory `mlflow run` uses."""
    for candidate in (Path(__file__).resolve().parents[2], Path.cwd()):  # steps/release/child_runs.py
        if (candidate / "MLproject").is_file():
            return candidate
    raise FileNotFoundError("no MLproject found; run the pipeline from the rtdeploy project folder")


@functools.cache
def project_commit() -> str | None:
    """The checkout's commit, read once per pipeline: every step's reuse check compares with it."""
    return get_git_commit(str(project_dir()))


def child_env_manager(setting: str) -> str:
    """The env manager a step's children run in: the one given, or with `auto` the one this process got."""
    return detect_env_manager() if setting == AUTO else setting


def detect_env_manager() -> str:
    """The env manager `mlflow run` used for this process, read off the interpreter's location."""
    from mlflow.utils.virtualenv import _get_mlflow_virtualenv_root  # where MLflow puts virtualenv/uv envs

    prefix = Path(sys.prefix).resolve()
    if Path(_get_mlflow_virtualenv_root()).expanduser().resolve() in prefix.parents:
        return "virtualenv"
    conda_prefix = os.environ.get("CONDA_PREFIX", "")
    if conda_prefix and Path(conda_prefix).resolve() == prefix and prefix.name.startswith("mlflow-"):
        return "conda"
    return "local"


def find_reusable_run(entry_point: str, parameters: dict[str, str], git_commit: str, experiment_id: str) -> Run | None:
    """The newest FINISHED run of `entry_point` at `git_commit` whose params equal `parameters` (as strings).

    `mlflow run` stores each parameter shell-quoted (an empty value as "''"), so that is what is compared.
    """
    runs = mlflow.search_runs(
        experiment_ids=[experiment_id],
        filter_string=(
            f"tags.`{MLFLOW_PROJECT_ENTRY_POINT}` = '{entry_point}' "
            f"and tags.`{MLFLOW_GIT_COMMIT}` = '{git_commit}' and attributes.status = 'FINISHED'"
        ),
        order_by=["attributes.start_time DESC"],
        output_format="list",
    )
    for run in runs:
        if all(run.data.params.get(key) == quote(value) for key, value in parameters.items()):
            return run
    return None


def earlier_durations(entry_points: set[str], parameters: dict[str, str], experiment_id: str) -> dict:
    """Seconds each entry point's newest finished runs with these parameters (the data's) took, at most 5."""
    found = {}
    for entry_point in entry_points:
        runs = mlflow.search_runs(
            experiment_ids=[experiment_id],
            filter_string=f"tags.`{MLFLOW_PROJECT_ENTRY_POINT}` = '{entry_point}' and attributes.status = 'FINISHED'",
            order_by=["attributes.start_time DESC"],
            max_results=50,
            output_format="list",
        )
        alike = [run for run in runs if all(run.data.params.get(k) == quote(v) for k, v in parameters.items())]
        found[entry_point] = [(run.info.end_time - run.info.start_time) / 1000 for run in alike[:5]]
    return found


def run_step(entry_point: str, parameters: dict[str, str], *, env_manager: str, reuse: bool = True) -> str:
    """Run an entry point as a child of the active run, or reuse a matching finished run; returns its run id.

    A child that exits non-zero raises StepFailed carrying its exit code (contract.EXIT_*), so the caller
    tells a gate refusal (3) and a user's mistake (2) from a failure (1); its own line is already printed."""
    folder = project_dir()
    experiment_id = mlflow.active_run().info.experiment_id
    git_commit = project_commit()
    if reuse and git_commit:
        previous = find_reusable_run(entry_point, parameters, git_commit, experiment_id)
        if previous:
            print(f"pipeline: {entry_point}: reusing finished run {previous.info.run_id} (same parameters and commit)")
            return previous.info.run_id
    print(f"pipeline: {entry_point}: starting with {parameters}")
    submitted = mlflow.projects.run(
        uri=str(folder),
        entry_point=entry_point,
        parameters=parameters,
        env_manager=env_manager,
        experiment_id=experiment_id,
        synchronous=False,  # waited for below, to keep the child's exit code (synchronous=True drops it)
    )
    code = child_exit_code(submitted.run_id, wait_for_child(submitted))
    if code != contract.EXIT_OK:
        raise StepFailed(f"{entry_point} (run {submitted.run_id}) exited {code}: its last line above says why", code)
    return submitted.run_id


def child_exit_code(run_id: str, code: int) -> int:
    """The child step's own exit code: `mlflow run` (which runs an asynchronous child) exits 1 for every failure,
    so a mistake (2) or a gate refusal (3) is read from the tag the step put on its run (parameters._exit)."""
    if code != contract.EXIT_FAILURE:
        return code
    return int(mlflow.MlflowClient().get_run(run_id).data.tags.get(contract.TAG_EXIT_CODE, code))


def wait_for_child(submitted) -> int:
    """The child's exit code, with its run marked FINISHED or FAILED if the child left it running (as
    mlflow.projects does for a synchronous run); an interrupt stops the child too."""
    try:
        code = submitted.command_proc.wait()
    except KeyboardInterrupt:
        submitted.cancel()
        _mark_ended(submitted.run_id, "FAILED")
        raise
    _mark_ended(submitted.run_id, "FINISHED" if code == contract.EXIT_OK else "FAILED")
    return code


def _mark_ended(run_id: str, status: str) -> None:
    client = mlflow.MlflowClient()
    if client.get_run(run_id).info.status == "RUNNING":
        client.set_terminated(run_id, status)
