"""Monitoring end to end, as a user runs it: serve the champion, `simulate` traffic with feedback, `monitor` it.

Clean traffic raises no alert and its live accuracy is the offline test accuracy; noisy and
shifted traffic raise drift and accuracy alerts with the error causes' images logged, and fail_on_alert
makes the command fail, so a scheduler can trigger an update."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request

import mlflow
import pytest

from steps import contract
from tests.support.commands import mlflow_run
from tests.support.server_process import free_port

pytestmark = pytest.mark.e2e
MODEL = contract.DEFAULT_MODEL_NAME
TEST_SPLIT = 360  # one pass over the digits test split: no sample twice in a window


@pytest.fixture(scope="module")
def server(first_main, tmp_path_factory):
    """The champion that `mlflow run .` registered, served on 127.0.0.1; yields (url, prediction log)."""
    port, log = free_port(), tmp_path_factory.mktemp("monitoring") / "predictions.db"
    process = subprocess.Popen(
        [sys.executable, "-m", "steps.serve", "--port", str(port), "--prediction_log", str(log)],
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/ready", timeout=2):
                break
        except OSError:
            time.sleep(0.3)
    else:
        process.kill()
        pytest.fail("the server did not get ready in 120 s")
    yield url, log
    process.terminate()
    process.wait(timeout=30)


def simulate(url: str, drift: str) -> tuple[float, float]:
    """Send the test split once through `mlflow run -e simulate`; returns the time range it took."""
    start = time.time()
    result = mlflow_run(
        "-e",
        "simulate",
        "-P",
        f"url={url}",
        "-P",
        f"drift={drift}",
        "-P",
        f"requests={TEST_SPLIT}",
        "-P",
        "feedback_fraction=1.0",
        experiment=contract.MONITORING_EXPERIMENT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"{TEST_SPLIT:,} answered" in result.stdout, result.stdout[-2000:]
    return start, time.time()


def monitor(log, since: float, until: float, *extra: str):
    """One window covering [since, until], judged on its own (consecutive=1); returns (result, nested version run)."""
    result = mlflow_run(
        "-e",
        "monitor",
        "-P",
        f"prediction_log={log}",
        "-P",
        f"since={since}",
        "-P",
        f"until={until}",
        "-P",
        "consecutive=1",
        "-P",
        "window_minutes=60",
        *extra,
        experiment=contract.MONITORING_EXPERIMENT,
    )
    runs = mlflow.search_runs(
        experiment_names=[contract.MONITORING_EXPERIMENT],
        filter_string=f"tags.`{contract.TAG_STEP}` = '{contract.MONITOR}'",
        order_by=["attributes.start_time DESC"],
        output_format="list",
    )
    parents = [run for run in runs if run.info.run_name == contract.MONITOR]
    assert parents, f"monitor logged no run: {result.stderr[-3000:]}"
    parent = parents[0]
    (version_run,) = [run for run in runs if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    return result, parent, version_run


@pytest.fixture(scope="module")
def clean(server):
    url, log = server
    return monitor(log, *simulate(url, "none"))


def test_clean_traffic_raises_no_alert_and_its_live_accuracy_is_the_offline_one(clean):
    """The test split sent once, every sample labelled: the server answers exactly as the offline measurement."""
    result, parent, version_run = clean
    assert result.returncode == 0, result.stderr[-3000:]
    assert parent.data.tags[contract.TAG_ALERT] == contract.ALERT_NONE
    champion = mlflow.MlflowClient().get_model_version_by_alias(MODEL, contract.CHAMPION)
    offline = float(champion.tags[contract.VERSION_TAG_ACCURACY])
    metrics = version_run.data.metrics
    assert metrics[contract.LABELLED] == TEST_SPLIT
    assert metrics[contract.LIVE_ACCURACY] == pytest.approx(offline, abs=1e-12)
    assert parent.data.metrics[contract.JUDGED_WINDOWS] == 1
    assert all(metrics[name] > 0 for name in contract.DRIFT_STATISTICS)
    assert metrics[contract.REQUESTS] == TEST_SPLIT and metrics[contract.LATENCY_P99_MS] > 0
    artifacts = {f.path for f in mlflow.MlflowClient().list_artifacts(parent.info.run_id)}
    assert "monitor_report.html" in artifacts


@pytest.mark.parametrize("drift", ["noise", "shift"])
def test_drifted_traffic_raises_drift_and_accuracy_alerts_with_the_causes_images(server, clean, drift, tmp_path):
    url, log = server
    since, until = simulate(url, drift)
    result, parent, version_run = monitor(log, since, until, "-P", "fail_on_alert=true")
    assert result.returncode != 0 and "alert" in result.stderr, "fail_on_alert must fail the command"
    assert set(parent.data.tags[contract.TAG_ALERT].split(",")) >= {"drift", "accuracy"}
    assert version_run.data.metrics[contract.LIVE_ACCURACY_HIGH] < 0.9
    artifacts = {f.path for f in mlflow.MlflowClient().list_artifacts(version_run.info.run_id)}
    expected = {"error_causes.png", "errors_explained.png", "errors_per_true_class.png", "confusion_matrix.png"}
    assert expected | {"drift_p_values.png"} <= artifacts  # the mistakes with their occlusion maps too
    report = mlflow.artifacts.download_artifacts(
        run_id=parent.info.run_id, artifact_path="monitor_report.html", dst_path=str(tmp_path)
    )
    with open(report) as page:
        assert "data:image/png;base64," in page.read()  # self-contained: its figures are inside
