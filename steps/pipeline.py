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
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow.entities import Run
from mlflow.exceptions import ExecutionException
from mlflow.utils.git_utils import get_git_commit
from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT, MLFLOW_PROJECT_ENTRY_POINT
from mlflow.utils.string_utils import quote

from steps import contract
from steps.cluster import ClusterConfig
from steps.config import as_parameters, parse_configs, require_choice, run_cli, setting
from steps.prune import PruneConfig
from steps.quantize import QuantizeConfig
from steps.register import DEFAULT_MODEL_NAME, RegisterConfig
from steps.registry import RegistryError
from steps.report import comparison_figure, comparison_table
from steps.selection import VariantRow, select_best
from steps.tracking import log_config, variant_row
from steps.train import TrainConfig

ENV_MANAGERS = ("auto", "local", "virtualenv", "uv", "conda")

# The variants `main` derives from one trained model: (key, entry point, parent key, settings).
# Settings not named here take the step's defaults.
COMPRESSION_PLAN = (
    ("dynamic", "quantize", "train", {"mode": "dynamic"}),
    ("float16", "quantize", "train", {"mode": "float16"}),
    ("int8", "quantize", "train", {"mode": "int8"}),
    ("qat-int8", "quantize", "train", {"mode": "qat"}),
    ("pruned", "prune", "train", {}),
    ("pruned-int8", "quantize", "pruned", {"mode": "int8"}),
    ("pruned2:4", "prune", "train", {"structure": "2:4"}),
    ("pruned2:4-int8", "quantize", "pruned2:4", {"mode": "int8"}),
    ("clustered", "cluster", "train", {}),
    ("clustered-int8", "quantize", "clustered", {"mode": "int8"}),
    ("pruned-clustered", "cluster", "pruned", {"preserve_sparsity": True}),  # Deep Compression style
    ("pruned-clustered-qat-int8", "quantize", "pruned-clustered", {"mode": "qat"}),
)
STEP_CONFIGS = {"prune": PruneConfig, "cluster": ClusterConfig, "quantize": QuantizeConfig}
ALL_VARIANTS = "all"


def plan_for(variants: str) -> list[tuple]:
    """The plan's steps for a comma-separated list of plan keys, with the steps they derive from, in order."""
    if variants == ALL_VARIANTS:
        return list(COMPRESSION_PLAN)
    by_key = {step[0]: step for step in COMPRESSION_PLAN}
    wanted = [key.strip() for key in variants.split(",") if key.strip()]
    unknown = [key for key in wanted if key not in by_key]
    if unknown or not wanted:
        raise ValueError(
            f"variants={variants!r}: unknown {unknown}; use {ALL_VARIANTS!r} or some of: {', '.join(by_key)}"
        )
    needed = set()
    for key in wanted:
        while key in by_key and key not in needed:  # a variant needs its parent's step too
            needed.add(key)
            key = by_key[key][2]
    return [step for step in COMPRESSION_PLAN if step[0] in needed]


@dataclass(frozen=True)
class PipelineConfig:
    """Run every stage on one data set (the parameters of `train` apply to its stage)."""

    model_name: str = setting(DEFAULT_MODEL_NAME, "registered model the best variant is registered under")
    max_accuracy_drop: float = setting(0.005, "largest accuracy loss vs the float baseline a chosen variant may have")
    env_manager: str = setting("auto", f"environment of the child runs: {', '.join(ENV_MANAGERS)} (auto = this run's)")
    variants: str = setting(ALL_VARIANTS, "which compression variants to make: all, or plan keys like int8,pruned-int8")
    reuse_runs: bool = setting(True, "reuse a finished child run with the same entry point, parameters and git commit")

    def __post_init__(self):
        require_choice("env_manager", self.env_manager, ENV_MANAGERS)
        plan_for(self.variants)  # raises on unknown keys
        if not 0 <= self.max_accuracy_drop < 1:
            raise ValueError(f"max_accuracy_drop must be in [0, 1), got {self.max_accuracy_drop}")


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
    """Run an entry point as a child of the active run, or reuse a matching finished run; returns its run id."""
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
        synchronous=True,
    )
    return submitted.run_id


def run_pipeline(pipeline: PipelineConfig, train: TrainConfig) -> dict[str, str]:
    """Run (or reuse) every stage under the active run and report the variants; returns each step's run id."""
    env_manager = detect_env_manager() if pipeline.env_manager == "auto" else pipeline.env_manager

    def step(entry_point: str, config) -> str:
        return run_step(entry_point, as_parameters(config), env_manager=env_manager, reuse=pipeline.reuse_runs)

    step_runs = {"train": step("train", train)}
    data_settings = {"dataset": train.dataset, "image_size": train.image_size, "seed": train.seed}
    for key, entry_point, parent, settings in plan_for(pipeline.variants):
        parent_uri = f"runs:/{step_runs[parent]}/{contract.KERAS_MODEL}"
        step_runs[key] = step(entry_point, STEP_CONFIGS[entry_point](model_uri=parent_uri, **data_settings, **settings))
    mlflow.set_tags({contract.TAG_STEP_RUN.format(step=key): run_id for key, run_id in step_runs.items()})
    report_variants([variant_row(run_id) for run_id in step_runs.values()], pipeline.max_accuracy_drop)
    # Registration depends on the registry's state, not only on its parameters: never reused.
    register = RegisterConfig(
        run_id=mlflow.active_run().info.run_id,
        model_name=pipeline.model_name,
        max_accuracy_drop=pipeline.max_accuracy_drop,
    )
    try:
        step_runs["register"] = run_step("register", as_parameters(register), env_manager=env_manager, reuse=False)
    except ExecutionException as error:
        raise RegistryError(
            f"register did not promote a new champion (its reason is printed above; {error}); "
            f"every variant is logged, and models:/{pipeline.model_name}@{contract.CHAMPION} is unchanged"
        ) from error
    mlflow.set_tag(contract.TAG_STEP_RUN.format(step="register"), step_runs["register"])
    return step_runs


def report_variants(rows: list[VariantRow], max_accuracy_drop: float) -> VariantRow | None:
    """Log the comparison table and plot on the active run, and name the best variant within the budget."""
    best = select_best(rows, max_accuracy_drop, objective="size")
    mlflow.log_table(comparison_table(rows), "variants.json")
    mlflow.log_figure(comparison_figure(rows, best), "variants.png")
    width = max(len(row.variant) for row in rows)
    print(f"\n{'variant':{width}}  accuracy    drop   gzip bytes  ratio  p50 ms")
    for row in sorted(rows, key=lambda r: r[contract.SIZE_GZIP_BYTES]):
        print(
            f"{row.variant:{width}}  {row[contract.ACCURACY]:.4f}  {row[contract.ACCURACY_DROP]:+.4f}  "
            f"{int(row[contract.SIZE_GZIP_BYTES]):>11,}  {row[contract.COMPRESSION_RATIO]:5.1f}  "
            f"{row[contract.LATENCY_P50_MS]:.3f}"
        )
    if best is None:
        print(f"pipeline: no variant is within max_accuracy_drop={max_accuracy_drop}")
        return None
    mlflow.set_tag(contract.TAG_BEST_VARIANT, best.variant)
    mlflow.log_metric(contract.BEST_COMPRESSION_RATIO, best[contract.COMPRESSION_RATIO])
    print(
        f"pipeline: best within max_accuracy_drop={max_accuracy_drop}: {best.variant} "
        f"({best[contract.COMPRESSION_RATIO]:.1f}x smaller gzipped than float32, run {best.run_id})"
    )
    return best


def main(argv: list[str] | None = None) -> None:
    pipeline, train = parse_configs((PipelineConfig, TrainConfig), argv, description=PipelineConfig.__doc__)
    with mlflow.start_run() as run:
        log_config(pipeline)
        log_config(train)
        step_runs = run_pipeline(pipeline, train)
    summary = ", ".join(f"{step} {run_id}" for step, run_id in step_runs.items())
    print(f"pipeline: run {run.info.run_id} finished: {summary}")


if __name__ == "__main__":
    run_cli("pipeline", main)
