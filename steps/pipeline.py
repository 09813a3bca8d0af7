"""`main` entry point: the whole chain on one data set, each stage a nested child run.

A stage whose entry point, parameters (compared as the strings MLflow stores)
and git commit match a FINISHED run of this experiment is not run again: that
run is reused. Child runs get the same --env-manager as this run (MLflow does
not pass it on by itself, mlflow#11849).
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
from steps.compress.recipes import RECIPE_CONFIGS
from steps.config import GateRefused, StepFailed, as_parameters, parse_configs, run_cli
from steps.core.plan import plan_for
from steps.core.selection import VariantRow, select_best
from steps.datasets.data import check_dataset
from steps.lineage import check_model_reference, variant_row
from steps.report import comparison_figure, comparison_table
from steps.settings import (
    PipelineConfig,
    RegisterConfig,
    TrainConfig,
)
from steps.tracking import log_config, step_run


@functools.cache
def project_dir() -> Path:
    """The folder holding MLproject: this checkout, or the working directory `mlflow run` uses."""
    for candidate in (Path(__file__).resolve().parents[1], Path.cwd()):
        if (candidate / "MLproject").is_file():
            return candidate
    raise FileNotFoundError("no MLproject found; run the pipeline from the rtdeploy project folder")


@functools.cache
def project_commit() -> str | None:
    """The checkout's commit, read once per pipeline: every step's reuse check compares with it."""
    return get_git_commit(str(project_dir()))


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
    code = wait_for_child(submitted)
    if code != contract.EXIT_OK:
        raise StepFailed(f"{entry_point} (run {submitted.run_id}) exited {code}: its last line above says why", code)
    return submitted.run_id


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


def run_pipeline(pipeline: PipelineConfig, train: TrainConfig) -> dict[str, str]:
    """Run (or reuse) every stage under the active run and report the variants; returns each step's run id."""
    env_manager = detect_env_manager() if pipeline.env_manager == "auto" else pipeline.env_manager

    def step(entry_point: str, config) -> str:
        return run_step(entry_point, as_parameters(config), env_manager=env_manager, reuse=pipeline.reuse_runs)

    step_runs = {contract.TRAIN: step(contract.TRAIN, train)}
    data_settings = {"dataset": train.dataset, "image_size": train.image_size, "seed": train.seed}
    for planned in plan_for(pipeline.variants):
        parent_uri = f"runs:/{step_runs[planned.parent]}/{contract.KERAS_MODEL}"
        config = RECIPE_CONFIGS[planned.entry_point](model_uri=parent_uri, **data_settings, **planned.settings)
        step_runs[planned.key] = step(planned.entry_point, config)
    mlflow.set_tags({contract.TAG_STEP_RUN.format(step=key): run_id for key, run_id in step_runs.items()})
    report_variants([variant_row(run_id) for run_id in step_runs.values()], pipeline.max_accuracy_drop)
    # Registration depends on the registry's state, not only on its parameters: never reused.
    register = RegisterConfig(
        run_id=mlflow.active_run().info.run_id,
        model_name=pipeline.model_name,
        max_accuracy_drop=pipeline.max_accuracy_drop,
    )
    try:
        step_runs[contract.REGISTER] = run_step(
            contract.REGISTER, as_parameters(register), env_manager=env_manager, reuse=False
        )
    except StepFailed as failure:
        if failure.exit_code != contract.EXIT_REFUSED:
            raise
        raise GateRefused(
            f"register did not promote a new champion (its reason is printed above); every variant is logged, "
            f"and models:/{pipeline.model_name}@{contract.CHAMPION} is unchanged"
        ) from failure
    mlflow.set_tag(contract.TAG_STEP_RUN.format(step=contract.REGISTER), step_runs[contract.REGISTER])
    return step_runs


def report_variants(rows: list[VariantRow], max_accuracy_drop: float) -> VariantRow | None:
    """Log the comparison table and plot on the active run, and name the best variant within the budget.

    The budget is checked on the validation split; the test accuracy (with its
    95% interval) is printed and logged for every variant, never used to choose.
    """
    best = select_best(rows, max_accuracy_drop, objective="size")
    mlflow.log_table(comparison_table(rows), contract.VARIANTS_TABLE)
    mlflow.log_figure(comparison_figure(rows, best, max_accuracy_drop), contract.VARIANTS_FIGURE)
    width = max(len(row.variant) for row in rows)
    print(f"\n{'variant':{width}}  val drop  test accuracy [95% CI]    gzip bytes  ratio  p50 ms")
    for row in sorted(rows, key=lambda r: r[contract.SIZE_GZIP_BYTES]):
        print(
            f"{row.variant:{width}}  {row[contract.VAL_ACCURACY_DROP]:+.4f}   {row[contract.ACCURACY]:.4f} "
            f"[{row[contract.ACCURACY_LOW]:.3f}, {row[contract.ACCURACY_HIGH]:.3f}]  "
            f"{int(row[contract.SIZE_GZIP_BYTES]):>11,}  {row[contract.COMPRESSION_RATIO]:5.1f}  "
            f"{row[contract.LATENCY_P50_MS]:.3f}"
        )
    if best is None:
        print(f"pipeline: no variant is within max_accuracy_drop={max_accuracy_drop} on the validation split")
        return None
    mlflow.set_tag(contract.TAG_BEST_VARIANT, best.variant)
    mlflow.log_metric(contract.BEST_COMPRESSION_RATIO, best[contract.COMPRESSION_RATIO])
    print(
        f"pipeline: best within max_accuracy_drop={max_accuracy_drop} (validation): {best.variant} "
        f"({best[contract.COMPRESSION_RATIO]:.1f}x smaller gzipped than float32; test accuracy "
        f"{best[contract.ACCURACY]:.4f} [{best[contract.ACCURACY_LOW]:.4f}, {best[contract.ACCURACY_HIGH]:.4f}], "
        f"run {best.run_id})"
    )
    return best


def main(argv: list[str] | None = None) -> None:
    pipeline, train = parse_configs((PipelineConfig, TrainConfig), argv, description=PipelineConfig.__doc__)
    check_dataset(train.dataset)  # what the children would refuse, refused before the first one starts
    if train.base_model:
        check_model_reference(train.base_model, "base_model")
    with step_run(contract.MAIN) as run:
        log_config(pipeline)
        log_config(train)
        step_runs = run_pipeline(pipeline, train)
    summary = ", ".join(f"{step} {run_id}" for step, run_id in step_runs.items())
    print(f"pipeline: run {run.info.run_id} finished: {summary}")


if __name__ == "__main__":
    run_cli(contract.MAIN, main)
