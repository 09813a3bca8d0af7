"""`monitor` judging windows of traffic: latency, errors, live accuracy and drift per version, alerts that need
consecutive windows, too little traffic as nothing to judge, and the command's answers to logs it cannot read."""

from __future__ import annotations

import hashlib
import sqlite3
import sys
from contextlib import closing

import mlflow
import numpy as np
import pandas as pd
import pytest

from steps import contract, monitor
from steps.adapt.labelled import labelled_samples
from steps.monitor import consecutive_alerts, judge, window_edges
from steps.monitoring.reference_profile import make_reference
from steps.monitoring.traffic import LogError, Traffic
from steps.parameters import UsageError
from steps.serve.predlog import PredictionLog
from steps.settings import MonitorConfig
from tests.support.commands import run_command
from tests.support.logs import NAMES, served_log

N_CLASSES = 3


T0 = 1_800_000_000.0


def traffic(rows: list[dict], feedback: list[tuple[str, str]] = (), refusals: list[tuple[float, int, str]] = ()):
    """In-memory traffic: one single-sample prediction per row dict (time, version, latency, correct, ...)."""
    rng = np.random.default_rng(0)
    predictions, samples, probabilities = [], [], []
    for i, row in enumerate(rows):
        predicted = row.get("predicted", i % N_CLASSES)
        request_id = row.get("request_id", f"r{i}")
        model = row.get("model", contract.DEFAULT_MODEL_NAME)
        common = {
            "time": row["time"],
            "request_id": request_id,
            "replica": "h:1:1",
            "endpoint": "invocations",
            "model_name": model,
            "model_version": row.get("version", "1"),
        }
        predictions.append(common | {"latency_ms": row.get("latency_ms", 1.0), "inference_ms": 0.1, "n_samples": 1})
        samples.append(common | {"sample_index": 0, "predicted_class": predicted})
        p = np.full(N_CLASSES, 0.05)
        p[predicted] = 0.9
        probabilities.append(p + rng.normal(0, 0.01, N_CLASSES))
    return Traffic(
        predictions=pd.DataFrame(predictions),
        samples=pd.DataFrame(samples),
        probabilities=np.asarray(probabilities, np.float32),
        inputs=[None] * len(samples),
        feedback=pd.DataFrame(
            [{"request_id": r, "sample_index": 0, "time": T0, "true_label": label} for r, label in feedback],
            columns=["request_id", "sample_index", "time", "true_label"],
        ),
        refusals=pd.DataFrame(
            [{"time": t, "status": s, "kind": k, "endpoint": "invocations"} for t, s, k in refusals],
            columns=["time", "status", "kind", "endpoint"],
        ),
        heartbeats=pd.DataFrame(columns=["time", "replica", "rss_bytes"]),
    )


def config(**settings) -> MonitorConfig:
    return MonitorConfig(**({"min_samples": 10, "consecutive": 1, "window_minutes": 1.0} | settings))


def test_windows_cover_the_range_and_the_last_row_falls_in_the_last_one():
    edges = window_edges(T0, T0 + 150, minutes=1)
    assert [(round(a - T0), round(b - T0)) for a, b in edges] == [(0, 60), (60, 120), (120, 180)]
    assert window_edges(T0, T0, minutes=60)[0][1] > T0  # a range of one instant still holds its row


def test_an_alert_needs_consecutive_judged_windows_and_small_windows_do_not_break_the_run():
    windows = [{"drift"}, {"drift", "latency"}, {"latency"}, set(), {"latency"}]
    assert consecutive_alerts(windows, 2) == {"drift", "latency"}
    assert consecutive_alerts(windows, 3) == set()
    assert consecutive_alerts([{"errors"}, set(), {"errors"}], 2) == set()


def test_latency_over_the_threshold_breaks_it_and_small_windows_are_reported_not_judged():
    rows = [{"time": T0 + i * 0.1, "latency_ms": 80.0} for i in range(20)]  # window 0: 20 slow requests
    rows += [{"time": T0 + 70 + i, "latency_ms": 80.0} for i in range(5)]  # window 1: too small to judge
    verdict = judge(config(max_p99_ms=50), traffic(rows), T0, T0 + 80, references={})
    first, second = verdict.versions["1"]
    assert first.judged and first.breaches == {"latency"} and first.metrics[contract.LATENCY_P99_MS] == 80.0
    assert not second.judged and any("not judged" in note for note in verdict.notes)
    assert verdict.alert == "latency"


def test_accuracy_alerts_only_when_the_whole_interval_is_below_the_floor():
    rows = [{"time": T0 + i * 0.1, "predicted": 0} for i in range(40)]
    mostly_wrong = [(f"r{i}", "b") for i in range(30)] + [(f"r{i}", "a") for i in range(30, 40)]
    verdict = judge(config(min_accuracy=0.9), traffic(rows, mostly_wrong), T0, T0 + 10, {}, {"1": NAMES})
    window = verdict.versions["1"][0]
    assert window.metrics[contract.LABELLED] == 40 and window.metrics[contract.LIVE_ACCURACY] == 0.25
    assert "accuracy" in window.breaches
    one_wrong = [(f"r{i}", "a") for i in range(3)] + [("r3", "b")]  # 3 of 4 right: interval reaches above 0.9
    verdict = judge(config(min_accuracy=0.9), traffic(rows, one_wrong), T0, T0 + 10, {}, {"1": NAMES})
    assert "accuracy" not in verdict.versions["1"][0].breaches


def test_a_window_without_feedback_is_judged_without_accuracy_and_says_so():
    rows = [{"time": T0 + i * 0.1} for i in range(20)]
    verdict = judge(config(), traffic(rows), T0, T0 + 10, references={})
    assert contract.LIVE_ACCURACY not in verdict.versions["1"][0].metrics
    assert any("no feedback" in note for note in verdict.notes)


def test_every_version_is_judged_apart_and_other_models_are_left_out():
    rows = [{"time": T0 + i * 0.1, "version": "1"} for i in range(20)]
    rows += [{"time": T0 + i * 0.1, "version": "2", "latency_ms": 90.0} for i in range(20)]
    rows += [{"time": T0 + i * 0.1, "model": "other-model", "latency_ms": 500.0} for i in range(20)]
    verdict = judge(config(max_p99_ms=50), traffic(rows), T0, T0 + 10, references={})
    assert set(verdict.versions) == {"1", "2"}
    assert verdict.alerts == {"2": {"latency"}}


def test_drift_is_judged_against_the_reference_of_the_version():
    rng = np.random.default_rng(1)
    reference = make_reference(
        np.eye(N_CLASSES)[rng.integers(0, N_CLASSES, 300)] * 0.9 + 0.03,
        rng.integers(0, N_CLASSES, 300),
        rng.random((300, 4, 4, 1)),
        class_names=NAMES,
    )
    rows = [{"time": T0 + i * 0.1, "predicted": 0} for i in range(200)]  # every answer the same class: drifted
    verdict = judge(config(), traffic(rows), T0, T0 + 30, references={"1": reference})
    window = verdict.versions["1"][0]
    assert window.drift is not None and window.metrics[contract.DRIFT_P_CLASSES] < 1e-6
    assert "drift" in window.breaches and contract.DRIFT_P_PIXELS not in window.metrics  # no images were logged


def test_refused_requests_count_by_kind_and_alert_as_errors_over_the_threshold():
    rows = [{"time": T0 + i * 0.1} for i in range(20)]
    refusals = [(T0 + 1, 400, "BAD_REQUEST")] * 3 + [(T0 + 2, 503, "UNAVAILABLE")]
    verdict = judge(config(max_error_rate=0.1), traffic(rows, refusals=refusals), T0, T0 + 10, references={})
    errors = verdict.errors[0]
    assert errors[contract.REQUESTS] == 24 and errors["refused.BAD_REQUEST"] == 3
    assert errors[contract.BAD_REQUEST_RATE] == pytest.approx(3 / 24)
    assert errors[contract.SERVER_ERROR_RATE] == pytest.approx(1 / 24)
    assert "errors" in verdict.reasons


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_monitor(path, *settings: str):
    monitor.main(["--prediction_log", str(path), *settings])


def first_layout_log(path) -> None:
    with closing(sqlite3.connect(path)) as connection:
        connection.executescript(
            "CREATE TABLE predictions (request_id TEXT PRIMARY KEY, time REAL, predicted_label TEXT);"
            "INSERT INTO predictions VALUES ('r1', 1.0, '3');"
        )


def truncated_log(path) -> None:
    served_log(path)
    path.write_bytes(path.read_bytes()[: 2 * 4096])  # the header and a page: the other tables' pages are gone


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda path: path.write_bytes(b"not a database at all, just text" * 100), "is not a readable SQLite"),
        (lambda path: path.write_bytes(b""), "is empty"),
        (first_layout_log, "another layout .*serve again with a new --prediction_log"),
        (truncated_log, "predictions.db is not a readable .* may be truncated or corrupt"),
    ],
    ids=["not-sqlite", "empty-file", "first-layout", "truncated"],
)
def test_a_file_monitor_cannot_read_is_named_with_the_fix_and_left_byte_for_byte(tmp_path, make, words):
    path = tmp_path / "predictions.db"
    make(path)
    before, files = digest(path), sorted(tmp_path.iterdir())
    with pytest.raises(LogError, match=words):
        run_monitor(path)
    assert digest(path) == before and sorted(tmp_path.iterdir()) == files


def test_too_little_traffic_is_nothing_to_judge_not_an_error(tmp_path, tracking, capsys):
    """An idle server is no failure: monitor ends normally, with judged_windows=0 and the reason (autopilot waits)."""
    path = tmp_path / "predictions.db"
    PredictionLog(path, "127.0.0.1:8080:1").close()  # a server started and stopped before any request
    run_monitor(path)
    served_log(path)
    run_monitor(path, "--since", "2000-01-01", "--until", "2000-01-02")
    run_monitor(path, "--model_name", "other")
    said = [line for line in capsys.readouterr().out.splitlines() if "nothing to judge" in line]
    assert len(said) == 3 and "check model_name" in said[2]
    runs = mlflow.search_runs(experiment_names=[contract.MONITORING_EXPERIMENT], output_format="list")
    assert [run.data.metrics[contract.JUDGED_WINDOWS] for run in runs] == [0.0, 0.0, 0.0]
    assert {run.data.tags[contract.TAG_ALERT] for run in runs} == {contract.ALERT_NONE}
    with pytest.raises(UsageError, match="before since"):
        run_monitor(path, "--since", "2000-01-02", "--until", "2000-01-01")


def test_the_command_answers_a_bad_log_with_one_line_and_no_traceback(tmp_path):
    corrupt = tmp_path / "predictions.db"
    corrupt.write_bytes(b"\x00garbage" * 512)
    result = run_command([sys.executable, "-m", "steps.monitor", "--prediction_log", str(corrupt)], timeout=120)
    assert result.returncode == contract.EXIT_USAGE and "Traceback" not in result.stderr
    assert result.stderr.strip().startswith(f"monitor: error: {corrupt} is not a readable SQLite prediction log")
    assert corrupt.read_bytes() == b"\x00garbage" * 512


def test_a_retried_request_counts_once_as_its_last_attempt_in_live_accuracy_and_in_update_data():
    """A client retrying under the same X-Request-Id is logged once per attempt; the answer it kept is the last."""
    retried = [
        {"time": T0, "request_id": "same", "predicted": 0},
        {"time": T0 + 1, "request_id": "same", "predicted": 1},
    ]
    rows = retried + [{"time": T0 + i, "predicted": i % N_CLASSES} for i in range(2, 12)]
    feedback = [("same", "b")] + [(f"r{i}", NAMES[i % N_CLASSES]) for i in range(2, 12)]
    logged = traffic(rows, feedback)
    verdict = judge(config(), logged, T0, T0 + 30, {}, {"1": NAMES})
    (window,) = verdict.versions["1"]
    assert window.metrics[contract.LABELLED] == 11 and window.metrics[contract.LIVE_ACCURACY] == 1.0
    taken = labelled_samples(logged, contract.DEFAULT_MODEL_NAME, NAMES, (2, 2, 1))
    assert len(taken.y) + sum(taken.refused.values()) == 11  # the same once-per-id reading (inputs not kept here)
