"""`promote` entry point: move `champion` to a chosen version, through the gate or, with force, around it."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import mlflow

from steps import contract
from steps.config import parse_config, run_cli, setting
from steps.register import GateConfig, log_verdict, promote_if_passing
from steps.registry import describe, get_version, move_champion, record_verdict
from steps.tracking import log_config, set_step_tags


@dataclass(frozen=True)
class PromoteConfig(GateConfig):
    """Make a registered version the champion (the old champion becomes previous)."""

    version: str = setting("", "the version number to promote")
    force: bool = setting(False, "skip the gate (recorded as validation_status=forced on the version)")

    def __post_init__(self):
        super().__post_init__()
        if not self.version:
            raise ValueError("version is required: the registered version number to promote")


def main(argv: list[str] | None = None) -> None:
    config = parse_config(PromoteConfig, argv)
    version = get_version(config.model_name, config.version)
    with mlflow.start_run():
        set_step_tags(
            "promote", version.tags.get(contract.VERSION_TAG_VARIANT, ""), f"models:/{version.name}/{version.version}"
        )
        log_config(config)
        if config.force:
            old = move_champion(version.name, version.version)
            reason = f"forced by promote (gate skipped); previous champion v{old}" if old else "forced by promote"
            record_verdict(version, contract.VALIDATION_FORCED, reason)
            mlflow.set_tags(
                {
                    contract.TAG_FORCED: "true",
                    contract.TAG_MODEL_NAME: version.name,
                    contract.TAG_MODEL_VERSION: version.version,
                    contract.VERSION_TAG_VALIDATION_REASON: reason,
                }
            )
            print(f"promote: {describe(version)} is now {contract.CHAMPION} ({reason})")
            return
        verdict = promote_if_passing(version, config.thresholds)
        log_verdict(version, verdict)
    if not verdict.passed:
        sys.exit(f"promote: {describe(version)} not promoted: {verdict.reason} (force=true skips the gate)")
    print(f"promote: {describe(version)}: {verdict.reason}")


if __name__ == "__main__":
    run_cli("promote", main)
