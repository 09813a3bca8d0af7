"""`promote` entry point: move `champion` to a chosen version, through the gate or, with force, around it."""

from __future__ import annotations

from steps import contract
from steps.parameters import GateRefused, parse_config, run_cli
from steps.release.promotion import force_promote, promote_if_passing
from steps.release.registry import describe, get_version, model_uri
from steps.release.tracking import log_config, set_variant_tags, step_run
from steps.settings import PromoteConfig


def main(argv: list[str] | None = None) -> None:
    config = parse_config(PromoteConfig, argv)
    version = get_version(config.model_name, config.version)
    with step_run(contract.PROMOTE):
        set_variant_tags(version.tags.get(contract.VERSION_TAG_VARIANT, ""), model_uri(version))
        log_config(config)
        verdict = force_promote(version) if config.force else promote_if_passing(version, config)
        if verdict.refused:  # the run ends FAILED, as the command exits non-zero (3)
            raise GateRefused(f"{describe(version)} not promoted: {verdict.reason} (force=true skips the gate)")
    print(f"promote: {describe(version)}: {verdict.status}: {verdict.reason}")


if __name__ == "__main__":
    run_cli(contract.PROMOTE, main)
