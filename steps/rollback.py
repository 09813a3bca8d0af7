"""`rollback` entry point: the `previous` version becomes `champion` again (the two swap)."""

from __future__ import annotations

from dataclasses import dataclass

import mlflow

from steps import contract
from steps.config import parse_config, run_cli, setting
from steps.register import DEFAULT_MODEL_NAME
from steps.registry import rollback
from steps.tracking import log_config, set_step_tags


@dataclass(frozen=True)
class RollbackConfig:
    """Serve the previous champion again: champion and previous swap."""

    model_name: str = setting(DEFAULT_MODEL_NAME, "registered model name")


def main(argv: list[str] | None = None) -> None:
    config = parse_config(RollbackConfig, argv)
    with mlflow.start_run():
        set_step_tags("rollback", "")
        log_config(config)
        champion, previous = rollback(config.model_name)
        mlflow.set_tags({contract.TAG_MODEL_NAME: config.model_name, contract.TAG_MODEL_VERSION: champion})
    print(f"rollback: {config.model_name} {contract.CHAMPION} is v{champion} again; v{previous} is {contract.PREVIOUS}")


if __name__ == "__main__":
    run_cli("rollback", main)
