"""`register` entry point: the best variant of a pipeline run becomes the challenger, then the gate decides.

The variant is the smallest (objective=size) or fastest (objective=latency)
whose validation accuracy is within `max_accuracy_drop` of its float
baseline's. It is registered once (registering the same variant run again
reuses its version), gets alias `challenger`, and is compared with the
current `champion` on the same test samples: it becomes champion (the old one
`previous`) only if it passes; otherwise the champion stays, the version is
tagged validation_status=failed with the reason, and the step exits non-zero.
"""

from __future__ import annotations

from mlflow.entities.model_registry import ModelVersion

from steps import contract
from steps.core.selection import Budget, VariantRow, select_best
from steps.parameters import GateRefused, parse_config, run_cli
from steps.release.gate import Verdict
from steps.release.lineage import variant_rows_of_pipeline
from steps.release.promotion import register_challenger
from steps.release.registry import RegistryError, describe
from steps.release.tracking import log_config, step_run
from steps.settings import RegisterConfig


def choose_variant(rows: list[VariantRow], budget: Budget, objective: str) -> VariantRow:
    best = select_best(rows, budget, objective)
    if best is None:
        closest = min(rows, key=lambda r: r[contract.VAL_ACCURACY_DROP])
        raise RegistryError(
            f"no variant is within {budget} on the validation split; the closest is {closest.variant} "
            f"({'; '.join(budget.exceeded(closest.metrics))}): raise the budget or train a better baseline"
        )
    return best


def register(config: RegisterConfig) -> tuple[ModelVersion, Verdict]:
    """Register the chosen variant as challenger and put it through the gate (the verdict is recorded)."""
    best = choose_variant(variant_rows_of_pipeline(config.run_id), config.budget, config.objective)
    return register_challenger(config.model_name, best.run_id, config)


def main(argv: list[str] | None = None) -> None:
    config = parse_config(RegisterConfig, argv)
    with step_run(contract.REGISTER):  # a refusal ends the run FAILED, as the command exits non-zero (3)
        log_config(config)
        version, verdict = register(config)
        if verdict.refused:
            raise GateRefused(f"{describe(version)} not promoted: {verdict.reason}")
    print(f"register: {describe(version)}: gate {verdict.status}: {verdict.reason}")


if __name__ == "__main__":
    run_cli(contract.REGISTER, main)
