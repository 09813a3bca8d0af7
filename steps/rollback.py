"""`rollback` entry point: the `previous` version becomes `champion` again (the two swap)."""

from __future__ import annotations

import mlflow

from steps import contract
from steps.parameters import parse_config, run_cli
from steps.release.registry import rollback
from steps.release.tracking import log_config, step_run
from steps.settings import RollbackConfig


def main(argv: list[str] | None = None) -> None:
    config = parse_config(RollbackConfig, argv)
    with step_run(contract.ROLLBACK):
        log_config(config)
        champion, previous = rollback(config.model_name)
        mlflow.set_tags({contract.TAG_MODEL_NAME: config.model_name, contract.TAG_MODEL_VERSION: champion})
    print(f"rollback: {config.model_name} {contract.CHAMPION} is v{champion} again; v{previous} is {contract.PREVIOUS}")


if __name__ == "__main__":
    run_cli(contract.ROLLBACK, main)
