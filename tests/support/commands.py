"""The project's commands as the tests run them: with this test's environment (tracking store, PATH), as
README tells users to, and the runs they leave."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlflow
from mlflow.utils.mlflow_tags import MLFLOW_PROJECT_ENTRY_POINT

from steps import contract

PROJECT = Path(__file__).resolve().parents[2]


def run_command(args: list[str], timeout: float = 900) -> subprocess.CompletedProcess:
    """Run a command with this test's environment (tracking store, PATH); output captured."""
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=os.environ.copy())


def mlflow_run(*args: str, timeout: float = 900, experiment: str = contract.EXPERIMENT) -> subprocess.CompletedProcess:
    """`mlflow run <project> --env-manager local --experiment-name <experiment> <args>`, as README tells users to."""
    command = ["mlflow", "run", str(PROJECT), "--env-manager", "local", "--experiment-name", experiment]
    return run_command([sys.executable, "-m", *command, *args], timeout=timeout)


def entry_point_runs(entry_point: str):
    """Runs of an MLproject entry point in the current store, oldest first."""
    return mlflow.search_runs(
        search_all_experiments=True,
        filter_string=f"tags.`{MLFLOW_PROJECT_ENTRY_POINT}` = '{entry_point}'",
        order_by=["attributes.start_time ASC"],
        output_format="list",
    )
