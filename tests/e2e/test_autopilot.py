"""autopilot tells "nothing to do" from a failure: an idle server is a round that waits; a check that cannot run
(monitoring_incomplete) fails the round, is logged with its reason, and after max_failures rounds in a row the
command exits 1 in one line. (The unattended update itself: tests/test_update_loop.py.)"""

from __future__ import annotations

import asyncio
import sys
from types import SimpleNamespace

import mlflow
import numpy as np
import pytest

from steps import contract
from steps.datasets.data import load_dataset
from steps.release.registry import register_deployable
from steps.release.tracking import log_litert_model
from steps.serve.predlog import PredictionLog
from steps.serve.runtime import ModelRef
from tests.support.commands import run_command
from tests.support.serving import tiny_tflite

pytestmark = pytest.mark.e2e
MODEL = "watched"


def served_log(path, version: str | None) -> None:
    """A server's log: started and stopped idle (version None), or with 20 predictions of `version` just now."""

    async def serve():
        log = PredictionLog(path, "127.0.0.1:8080:1")
        try:
            if version is not None:
                digits = load_dataset("digits")
                model = SimpleNamespace(
                    ref=ModelRef(MODEL, version, contract.CHAMPION, "run"),
                    class_names=list(digits.class_names),
                    sample_shape=digits.input_shape,
                )
                probabilities = np.full((20, 10), 0.1, np.float32)
                await log.log_prediction("r", "invocations", model, 1.0, 0.5, digits.x_test[:20], probabilities)
        finally:
            log.close()

    asyncio.run(serve())


def autopilot(log, *settings: str):
    args = [
        "--model_name",
        MODEL,
        "--prediction_log",
        str(log),
        "--interval_minutes",
        "1",
        "--consecutive",
        "1",
        "--min_samples",
        "1",
        "--env_manager",
        "local",
        *settings,
    ]
    result = run_command([sys.executable, "-m", "steps.autopilot", *args], timeout=600)
    (run,) = mlflow.search_runs(
        search_all_experiments=True,
        filter_string=f"tags.`{contract.TAG_STEP}` = '{contract.AUTOPILOT}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
        output_format="list",
    )
    return result, run


def test_an_idle_server_is_a_round_that_waits_not_a_failure(tracking, tmp_path):
    log = tmp_path / "predictions.db"
    served_log(log, version=None)
    result, run = autopilot(log, "--max_rounds", "1")
    assert result.returncode == contract.EXIT_OK, result.stderr[-3000:]
    assert "too little traffic to judge" in result.stdout
    assert run.data.metrics[contract.ROUND_FAILED] == 0


def test_a_check_that_cannot_run_fails_the_round_and_max_failures_ends_it_in_one_line(tracking, tmp_path):
    """The served version's reference profile cannot be made (its data set is gone): drift goes unchecked."""
    digits = load_dataset("digits")
    with mlflow.start_run() as made:
        model = tmp_path / "model.tflite"
        model.write_bytes(tiny_tflite(digits.input_shape, digits.n_classes))
        log_litert_model(model, digits)
        mlflow.log_metrics({contract.ACCURACY: 0.1, contract.SIZE_GZIP_BYTES: model.stat().st_size})
        mlflow.log_param("dataset", str(tmp_path / "moved-away.npz"))
    version = register_deployable(MODEL, made.info.run_id).version
    log = tmp_path / "predictions.db"
    served_log(log, version=str(version))
    result, run = autopilot(log, "--max_rounds", "3", "--max_failures", "1")
    assert result.returncode == contract.EXIT_FAILURE and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("autopilot: failed: round 1:") and contract.ALERT_INCOMPLETE in last, last
    assert run.data.metrics[contract.ROUND_FAILED] == 1 and run.data.tags[contract.TAG_ROUNDS] == "1"
    assert contract.ALERT_INCOMPLETE in run.data.tags[contract.TAG_ROUND_FAILURE.format(number=1)]
    assert run.info.status == "FAILED"
