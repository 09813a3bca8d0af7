"""`main` entry point: the whole chain on one data set, each stage a nested child run (steps/release/child_runs.py:
a finished run with the same entry point, parameters and commit is reused), then the variants compared and the
best within the budget registered through the gate.
"""

from __future__ import annotations

from dataclasses import fields

import mlflow

from steps import contract
from steps.compress.recipes import RECIPE_CONFIGS
from steps.core.plan import plan_for
from steps.core.progress import Progress
from steps.core.selection import Budget, VariantRow, select_best
from steps.datasets.data import check_dataset, known_side
from steps.parameters import GateRefused, StepFailed, as_parameters, parse_configs, run_cli
from steps.release.child_runs import child_env_manager, earlier_durations, run_step
from steps.release.lineage import check_model_reference, variant_row
from steps.release.tracking import log_config, step_run
from steps.reports.figures import comparison_figure, comparison_table
from steps.settings import (
    BudgetConfig,
    GateConfig,
    PipelineConfig,
    RegisterConfig,
    TrainConfig,
)


def run_pipeline(pipeline: PipelineConfig, train: TrainConfig) -> dict[str, str]:
    """Run (or reuse) every stage under the active run and report the variants; returns each step's run id."""
    env_manager = child_env_manager(pipeline.env_manager)
    plan = plan_for(pipeline.variants)
    data_settings = {
        "dataset": train.dataset,
        "image_size": train.image_size,
        "seed": train.seed,
        "robustness": train.robustness,
        "augment": train.augment,  # fine-tuning without it undoes what it taught (bench/robust_training.py)
    }
    entry_points = [contract.TRAIN, *(planned.entry_point for planned in plan)]
    experiment_id = mlflow.active_run().info.experiment_id
    progress = Progress(
        entry_points, earlier_durations(set(entry_points), {k: str(v) for k, v in data_settings.items()}, experiment_id)
    )

    def step(index: int, label: str, entry_point: str, config) -> str:
        print(f"pipeline: {progress.start(index, label)}", flush=True)
        return run_step(entry_point, as_parameters(config), env_manager=env_manager, reuse=pipeline.reuse_runs)

    step_runs = {contract.TRAIN: step(0, contract.TRAIN, contract.TRAIN, train)}
    for index, planned in enumerate(plan, start=1):
        parent_uri = f"runs:/{step_runs[planned.parent]}/{contract.KERAS_MODEL}"
        config = RECIPE_CONFIGS[planned.entry_point](model_uri=parent_uri, **data_settings, **planned.settings)
        step_runs[planned.key] = step(index, f"{planned.entry_point} ({planned.key})", planned.entry_point, config)
    mlflow.set_tags({contract.TAG_STEP_RUN.format(step=key): run_id for key, run_id in step_runs.items()})
    report_variants([variant_row(run_id) for run_id in step_runs.values()], pipeline.budget)
    # Registration depends on the registry's state, not only on its parameters: never reused. It gets every gate
    # and budget setting main took (GateConfig's and BudgetConfig's fields, so one added there reaches it too).
    shared = {field.name: getattr(pipeline, field.name) for field in (*fields(GateConfig), *fields(BudgetConfig))}
    register = RegisterConfig(run_id=mlflow.active_run().info.run_id, **shared)
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


def _optional(row: VariantRow, key: str, spec: str) -> str:
    """A metric a variant may lack (robustness off), formatted, or a dash."""
    return format(row.metrics[key], spec) if key in row.metrics else "-"


def report_variants(rows: list[VariantRow], budget: Budget) -> VariantRow | None:
    """Log the comparison table and plot on the active run, and name the best variant within the budget.

    The budget is checked on the validation split; the test accuracy (with its
    95% interval) is printed and logged for every variant, never used to choose.
    """
    best = select_best(rows, budget, objective="size")
    mlflow.log_table(comparison_table(rows), contract.VARIANTS_TABLE)
    mlflow.log_figure(comparison_figure(rows, best, budget.max_accuracy_drop), contract.VARIANTS_FIGURE)
    width = max(len(row.variant) for row in rows)
    print(
        f"\n{'variant':{width}}  val drop  val robust drop  test accuracy [95% CI]  robust accuracy  gzip bytes  "
        "ratio  p50 ms"
    )
    for row in sorted(rows, key=lambda r: r[contract.SIZE_GZIP_BYTES]):
        print(
            f"{row.variant:{width}}  {row[contract.VAL_ACCURACY_DROP]:+.4f}   "
            f"{_optional(row, contract.VAL_ROBUST_ACCURACY_DROP, '+.4f'):>15}  "
            f"{row[contract.ACCURACY]:.4f} [{row[contract.ACCURACY_LOW]:.3f}, {row[contract.ACCURACY_HIGH]:.3f}]  "
            f"{_optional(row, contract.ROBUST_ACCURACY, '.4f'):>15}  "
            f"{int(row[contract.SIZE_GZIP_BYTES]):>10,}  {row[contract.COMPRESSION_RATIO]:5.1f}  "
            f"{row[contract.LATENCY_P50_MS]:.3f}"
        )
    if best is None:
        print(f"pipeline: no variant is within {budget} on the validation split")
        return None
    mlflow.set_tag(contract.TAG_BEST_VARIANT, best.variant)
    mlflow.log_metric(contract.BEST_COMPRESSION_RATIO, best[contract.COMPRESSION_RATIO])
    print(
        f"pipeline: best within {budget} (validation): {best.variant} "
        f"({best[contract.COMPRESSION_RATIO]:.1f}x smaller gzipped than float32; test accuracy "
        f"{best[contract.ACCURACY]:.4f} [{best[contract.ACCURACY_LOW]:.4f}, {best[contract.ACCURACY_HIGH]:.4f}], "
        f"run {best.run_id})"
    )
    return best


def main(argv: list[str] | None = None) -> None:
    pipeline, train = parse_configs((PipelineConfig, TrainConfig), argv, description=PipelineConfig.__doc__)
    check_dataset(train.dataset)  # what the children would refuse, refused before the first one starts
    train.check_input_side(known_side(train.dataset, train.image_size))
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
