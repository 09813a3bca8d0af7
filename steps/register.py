"""`register` entry point: the best variant of a pipeline run becomes the challenger, then the gate decides.

The variant is the smallest (objective=size) or fastest (objective=latency)
whose accuracy is within `max_accuracy_drop` of its float baseline. It is
registered once (registering the same variant run again reuses its version),
gets alias `challenger`, and is compared with the current `champion` on the
same test data: it becomes champion (the old one `previous`) only if it
passes; otherwise the champion stays, the version is tagged
validation_status=failed with the reason, and the step exits non-zero.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import mlflow
from mlflow.entities.model_registry import ModelVersion

from steps import contract
from steps.config import parse_config, require_choice, run_cli, setting
from steps.gate import Thresholds, Verdict
from steps.registry import RegistryError, describe, gate, move_champion, register_deployable, version_by_alias
from steps.selection import OBJECTIVES, VariantRow, select_best
from steps.tracking import log_config, set_step_tags, variant_rows_of_pipeline

DEFAULT_MODEL_NAME = "digits-classifier"


@dataclass(frozen=True)
class GateConfig:
    """The gate's thresholds, shared by register and promote."""

    model_name: str = setting(DEFAULT_MODEL_NAME, "registered model name")
    min_accuracy_change: float = setting(
        0.0, "tolerance: how far below the champion's accuracy (same test data) a challenger may be"
    )
    min_accuracy: float = setting(0.9, "absolute accuracy floor for any champion")

    @property
    def thresholds(self) -> Thresholds:
        return Thresholds(self.min_accuracy_change, self.min_accuracy)

    def __post_init__(self):
        Thresholds(self.min_accuracy_change, self.min_accuracy)  # raises if out of range


@dataclass(frozen=True)
class RegisterConfig(GateConfig):
    """Register the best variant of a main run as challenger and promote it if it passes the gate."""

    run_id: str = setting("", "the main (pipeline) run whose variants to choose from")
    max_accuracy_drop: float = setting(0.005, "largest accuracy loss vs the float baseline the variant may have")
    objective: str = setting("size", f"best means smallest: {' or '.join(OBJECTIVES)} (gzip size or p50 latency)")

    def __post_init__(self):
        super().__post_init__()
        if not self.run_id:
            raise ValueError("run_id is required: the id of a finished main (pipeline) run")
        require_choice("objective", self.objective, tuple(OBJECTIVES))


def choose_variant(rows: list[VariantRow], max_accuracy_drop: float, objective: str) -> VariantRow:
    best = select_best(rows, max_accuracy_drop, objective)
    if best is None:
        closest = min(rows, key=lambda r: r[contract.ACCURACY_DROP])
        raise RegistryError(
            f"no variant is within max_accuracy_drop={max_accuracy_drop}; the closest is {closest.variant} "
            f"(drop {closest[contract.ACCURACY_DROP]:.4f}): raise max_accuracy_drop or train a better baseline"
        )
    return best


def promote_if_passing(version: ModelVersion, thresholds: Thresholds) -> Verdict:
    """Run the gate for `version` and move champion to it if it passes."""
    champion = version_by_alias(version.name, contract.CHAMPION)
    if champion is not None and champion.version == version.version:
        return Verdict(True, f"version {version.version} is already the champion", float("nan"), None)
    verdict = gate(version, thresholds)
    if verdict.passed:
        old = move_champion(version.name, version.version)
        print(
            f"register: {describe(version)} is now {contract.CHAMPION}"
            + (f"; v{old} is {contract.PREVIOUS}" if old else "")
        )
    return verdict


def register(config: RegisterConfig) -> tuple[ModelVersion, Verdict]:
    best = choose_variant(variant_rows_of_pipeline(config.run_id), config.max_accuracy_drop, config.objective)
    version = register_deployable(config.model_name, best.run_id)
    mlflow.MlflowClient().set_registered_model_alias(config.model_name, contract.CHALLENGER, version.version)
    return version, promote_if_passing(version, config.thresholds)


def log_verdict(version: ModelVersion, verdict: Verdict) -> None:
    mlflow.set_tags(
        {
            contract.TAG_MODEL_NAME: version.name,
            contract.TAG_MODEL_VERSION: version.version,
            contract.VERSION_TAG_VALIDATION_STATUS: contract.VALIDATION_PASSED
            if verdict.passed
            else contract.VALIDATION_FAILED,
            contract.VERSION_TAG_VALIDATION_REASON: verdict.reason,
        }
    )
    if verdict.challenger_accuracy == verdict.challenger_accuracy:  # not NaN: the gate ran
        mlflow.log_metric("challenger_accuracy", verdict.challenger_accuracy)
    if verdict.champion_accuracy is not None:
        mlflow.log_metric("champion_accuracy", verdict.champion_accuracy)


def main(argv: list[str] | None = None) -> None:
    config = parse_config(RegisterConfig, argv)
    with mlflow.start_run():
        set_step_tags("register", "")
        log_config(config)
        version, verdict = register(config)
        log_verdict(version, verdict)
    print(f"register: {describe(version)}: gate {'passed' if verdict.passed else 'FAILED'}: {verdict.reason}")
    if not verdict.passed:
        sys.exit(f"register: {describe(version)} not promoted: {verdict.reason}")


if __name__ == "__main__":
    run_cli("register", main)
