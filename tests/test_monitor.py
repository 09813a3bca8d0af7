"""How `monitor` judges logged traffic, on traffic built in memory: windows, thresholds, versions apart,
consecutive windows, and what it refuses to read."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import sys
from contextlib import closing
from types import SimpleNamespace

import mlflow
import numpy as np
import pandas as pd
import pytest

from steps import contract, monitor
from steps.adapt.labelled import labelled_samples
from steps.monitor import consecutive_alerts, judge, window_edges
from steps.monitoring.reference_profile import make_reference
from steps.monitoring.traffic import LogError, Traffic, log_files, parse_time, read, time_range
from steps.parameters import UsageError
from steps.serve.predlog import PredictionLog
from steps.serve.runtime import ModelRef
from steps.settings import MonitorConfig
from tests.support.commands import run_command

N_CLASSES = 3
NAMES = ("a", "b", "c")
T0 = 1_800_000_000.0


def traffic(rows: list[dict], feedback: list[tuple[str, str]] = (), refusals: list[tuple[float, int, str]] = ()):
    """In-memory traffic: one single-sample prediction per row dict (time, version, latency, correct, ...)."""
    rng = np.random.default_rng(0)
    predictions, samples, probabilities = [], [], []
    for i, row in enumerate(rows):
        predicted = row.get("predicted", i % N_CLASSES)
        request_id = row.get("request_id", f"r{i}")
        model = row.get("model", contract.DEFAULT_MODEL_NAME)
        common = {"time": row["time"], "request_id": request_id, "replica": "h:1:1", "endpoint": "invocations",
                  "model_name": model, "model_version": row.get("version", "1")}  # fmt: skip
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


def test_times_are_unix_seconds_or_iso_in_utc_unless_they_say_otherwise():
    assert parse_time("1800000000", "since") == 1_800_000_000.0
    assert parse_time("2026-11-29T10:00", "since") == parse_time("2026-11-29T10:00+00:00", "since")
    assert parse_time("", "since") is None
    with pytest.raises(ValueError, match="since='yesterday' is not a time"):
        parse_time("yesterday", "since")


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


def test_log_paths_that_match_nothing_are_named(tmp_path):
    with pytest.raises(LogError, match="'missing.db' matches no file"):
        log_files("missing.db")
    with pytest.raises(LogError, match="matches no file"):
        log_files(str(tmp_path / "replica-*.db"))
    (tmp_path / "a.db").touch()
    (tmp_path / "b.db").touch()
    assert [p.name for p in log_files(f"{tmp_path}/*.db, {tmp_path}/a.db")] == ["a.db", "b.db"]


def test_the_log_a_multi_process_server_was_given_names_its_workers_logs(tmp_path):
    """serve -P workers=2 -P prediction_log=p.db writes p.worker1.db and p.worker2.db; `p.db` finds both."""
    assert contract.worker_log_path(str(tmp_path / "p.db"), 2) == str(tmp_path / "p.worker2.db")
    for index in (1, 2):
        (tmp_path / contract.worker_log_path("p.db", index)).touch()
    (tmp_path / "other.worker1.db").touch()
    assert [p.name for p in log_files(str(tmp_path / "p.db"))] == ["p.worker1.db", "p.worker2.db"]
    (tmp_path / "p.db").touch()  # a single-process server wrote there before: it counts too
    assert [p.name for p in log_files(str(tmp_path / "p.db"))] == ["p.db", "p.worker1.db", "p.worker2.db"]


# What the server writes, read back: a real log of the server's layout, written by its PredictionLog.
MODEL = SimpleNamespace(ref=ModelRef(contract.DEFAULT_MODEL_NAME, "3", contract.CHAMPION, "run-3"),
                        class_names=list(NAMES), sample_shape=(2, 2, 1))  # fmt: skip
IMAGES = np.linspace(0, 1, 3 * 4, dtype=np.float32).reshape(3, 2, 2, 1)
SOFTMAX = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]], np.float32)


def served_log(path, replica: str = "127.0.0.1:8080:1") -> None:
    """A log as a server leaves it: a heartbeat, a batch of 3 and a single prediction, a refusal, feedback."""

    async def serve():
        log = PredictionLog(path, replica)
        try:
            await log.log_heartbeat(2**27, MODEL.ref, 0, 0)
            await log.log_prediction("batch", "invocations", MODEL, 3.0, 0.5, IMAGES, SOFTMAX)
            await log.log_prediction("single", "predict", MODEL, 2.0, 0.4, IMAGES[2:], SOFTMAX[2:])
            log.log_refusal("invocations", 400, "BAD_REQUEST", "bad")
            await log.log_feedback("batch", 1, "b")
            await log.log_feedback("single", 0, "a")
        finally:
            log.close()

    asyncio.run(serve())


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_reader_gives_back_every_sample_with_its_probabilities_input_and_later_feedback(tmp_path):
    served_log(tmp_path / "a.db", "127.0.0.1:8080:1")
    served_log(tmp_path / "b.db", "127.0.0.1:8081:2")
    files = log_files(f"{tmp_path}/*.db")
    first, last = time_range(files)  # of predictions and refusals
    traffic = read(files)
    assert len(traffic.predictions) == 4 and len(traffic.samples) == 8
    assert sorted(set(traffic.samples["replica"])) == ["127.0.0.1:8080:1", "127.0.0.1:8081:2"]
    batch = traffic.samples["request_id"] == "batch"
    assert np.array_equal(traffic.probabilities[batch.to_numpy()], np.vstack([SOFTMAX, SOFTMAX]))
    inputs = [image for image, keep in zip(traffic.inputs, batch) if keep]
    assert all(np.abs(image - IMAGES[i % 3]).max() <= 0.5 / 255 + 1e-6 for i, image in enumerate(inputs))
    assert len(traffic.feedback) == 2, "one label per (request id, sample): both files logged the same feedback"
    assert list(traffic.refusals["kind"]) == ["BAD_REQUEST"] * 2 and len(traffic.heartbeats) == 2
    assert len(read(files, first, last + 1).heartbeats) == 1, "the first server's came before any request"
    assert len(read(files, last + 1, last + 2).feedback) == 2, "labels arrive later than their predictions"


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
