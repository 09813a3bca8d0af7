"""The durable prediction log (PredictionLog): what each row holds, and what it refuses.

Every column of a prediction row and of a feedback row holds the value it was
given; a request id may repeat (a client's retry) and each repetition is a row
of its own, also within one group commit; a log of an older layout is refused
at start, with what to do, and left as it was.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time

import numpy as np
import pytest

from steps.serve.predlog import PREDICTION_COLUMNS, PredictionLog, input_summary, top_labels
from steps.serve.runtime import ModelRef

REF = ModelRef("digits", "7", "champion", "run-7")
PREVIOUS_LAYOUT = """CREATE TABLE predictions (request_id TEXT PRIMARY KEY, time REAL NOT NULL, endpoint TEXT NOT NULL,
    model_name TEXT NOT NULL, model_version TEXT NOT NULL, latency_ms REAL NOT NULL, n_samples INTEGER NOT NULL,
    input_mean REAL NOT NULL, input_std REAL NOT NULL, predicted_label TEXT NOT NULL, probability REAL NOT NULL)"""


def rows(path, table: str) -> list[dict]:
    with sqlite3.connect(path) as connection:
        connection.row_factory = sqlite3.Row
        return [dict(row) for row in connection.execute(f"SELECT * FROM {table} ORDER BY rowid")]


def logged(path, *calls) -> None:
    """Run log calls (coroutine factories taking the log) concurrently, as one group commit, then close."""

    async def scenario():
        log = PredictionLog(path)
        try:
            await asyncio.gather(*(call(log) for call in calls))
        finally:
            log.close()

    asyncio.run(scenario())


def test_a_prediction_row_holds_every_value_it_was_given(tmp_path):
    path = tmp_path / "p.db"
    before = time.time()
    logged(path, lambda log: log.log_prediction("r1", "predict", REF, 1.25, (2, 0.5, 0.25), "3,8", 0.75))
    (row,) = rows(path, "predictions")
    assert list(row) == list(PREDICTION_COLUMNS)
    assert isinstance(row.pop("id"), int) and before <= row.pop("time") <= time.time()
    assert row == {"request_id": "r1", "endpoint": "predict", "model_name": "digits", "model_version": "7",
                   "latency_ms": 1.25, "n_samples": 2, "input_mean": 0.5, "input_std": 0.25,
                   "predicted_label": "3,8", "probability": 0.75}  # fmt: skip


def test_a_feedback_row_holds_the_request_id_time_and_true_label(tmp_path):
    path = tmp_path / "p.db"
    logged(path, lambda log: log.log_prediction("r1", "invocations", REF, 1.0, (1, 0.0, 0.0), "3", 0.9))
    logged(path, lambda log: log.log_feedback("r1", "5"))
    (row,) = rows(path, "feedback")
    assert row["request_id"] == "r1" and row["true_label"] == "5" and row["time"] <= time.time()


def test_a_repeated_request_id_is_logged_again_also_within_one_group_commit(tmp_path):
    path = tmp_path / "p.db"
    retry = [
        lambda log, i=i: log.log_prediction("same", "invocations", REF, i, (1, 0.0, 0.0), "1", 0.5) for i in range(3)
    ]
    logged(path, *retry, lambda log: log.log_prediction("other", "invocations", REF, 9, (1, 0.0, 0.0), "2", 0.5))
    logged(path, lambda log: log.log_feedback("same", "1"))
    predictions = rows(path, "predictions")
    assert [row["request_id"] for row in predictions] == ["same", "same", "same", "other"]
    assert len({row["id"] for row in predictions}) == 4
    assert [row["request_id"] for row in rows(path, "feedback")] == ["same"]


def test_has_prediction_finds_any_logged_request_id(tmp_path):
    async def scenario():
        log = PredictionLog(tmp_path / "p.db")
        try:
            await log.log_prediction("r1", "predict", REF, 1.0, (1, 0.0, 0.0), "3", 0.9)
            return log.has_prediction("r1"), log.has_prediction("r2")
        finally:
            log.close()

    assert asyncio.run(scenario()) == (True, False)


@pytest.mark.parametrize("layout", [PREVIOUS_LAYOUT, "CREATE TABLE predictions (request_id TEXT, input_summary TEXT)"])
def test_a_log_of_another_layout_is_refused_with_what_to_do_and_left_untouched(tmp_path, layout):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as connection:
        connection.execute(layout)
    before = path.read_bytes()
    with pytest.raises(ValueError, match="has columns .* move it away or pass another --prediction_log"):
        PredictionLog(path)
    assert path.read_bytes() == before


def test_the_log_keeps_what_drift_statistics_need_of_a_batch():
    batch = np.array([[0.0, 1.0], [0.5, 0.5]], np.float32).reshape(2, 2, 1, 1)
    n, mean, std = input_summary(batch)
    assert n == 2 and mean == pytest.approx(0.5) and std == pytest.approx(np.std(batch))
    probabilities = np.array([[0.2, 0.8], [0.6, 0.4]], np.float32)
    labels, probability = top_labels(probabilities, ["cat", "dog"])
    assert labels == "dog,cat" and probability == pytest.approx(0.7)
