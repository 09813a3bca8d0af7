"""`main` entry point: the whole chain on one data set, each stage a nested child run.

A stage whose entry point, parameters (compared as the strings MLflow stores)
and git commit match a FINISHED run of this experiment is not run again: that
run is reused. Child runs get the same --env-manager as this run (MLflow does
not pass it on by itself, mlflow#11849).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow.entities import Run
from mlflow.utils.git_utils import get_git_commit
from mlflow.utils.string_utils import quote
from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT, MLFLOW_PROJECT_ENTRY_POINT

from steps.config import as_parameters, parse_configs, require_choice, setting
from steps.tracking import log_config
from steps.train import TrainConfig

ENV_MANAGERS = ("auto", "local", "virtualenv", "uv", "conda")
STEP_RUN_TAG = "rtdeploy.run.{step}"  # on the pipeline run: which child run did each step


@dataclass(frozen=True)
class PipelineConfig:
    """Run every stage on one data set (the parameters of `train` apply to its stage)."""

    env_manager: str = setting("auto", f"environment of the child runs: {', '.join(ENV_MANAGERS)} (auto = this run's)")
    reuse_runs: bool = setting(True, "reuse a finished child run with the same entry point, parameters and git commit")

    def __post_init__(self):
        require_choice("env_manager", self.env_manager, ENV_MANAGERS)


def project_dir() -> Path:
    """The folder holding MLproject: this checkout, or the working directory `mlflow run` uses."""
    for candidate in (Path(__file__).resolve().parents[1], Path.cwd()):
        if (candidate / "MLproject").is_file():
            return candidate
    raise FileNotFoundError("no MLproject found; run the pipeline from the rtdeploy project folder")


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


def run_step(entry_point: str, parameters: dict[str, str], *, env_manager: str, reuse: bool = True) -> str:
    """Run an entry point as a child of the active run, or reuse a matching finished run; returns its run id."""
    folder = project_dir()
    experiment_id = mlflow.active_run().info.experiment_id
    git_commit = get_git_commit(str(folder))
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
        synchronous=True,
    )
    return submitted.run_id


def run_pipeline(pipeline: PipelineConfig, train: TrainConfig) -> dict[str, str]:
    """Run (or reuse) every stage under the active run; returns the child run id of each step."""
    env_manager = detect_env_manager() if pipeline.env_manager == "auto" else pipeline.env_manager
    step_runs = {"train": run_step("train", as_parameters(train), env_manager=env_manager, reuse=pipeline.reuse_runs)}
    mlflow.set_tags({STEP_RUN_TAG.format(step=step): run_id for step, run_id in step_runs.items()})
    return step_runs


def main(argv: list[str] | None = None) -> None:
    pipeline, train = parse_configs((PipelineConfig, TrainConfig), argv, description=PipelineConfig.__doc__)
    with mlflow.start_run() as run:
        log_config(pipeline)
        log_config(train)
        step_runs = run_pipeline(pipeline, train)
    summary = ", ".join(f"{step} {run_id}" for step, run_id in step_runs.items())
    print(f"pipeline: run {run.info.run_id} finished: {summary}")


if __name__ == "__main__":
    main(sys.argv[1:])
