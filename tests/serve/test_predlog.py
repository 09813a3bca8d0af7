"""The durable prediction log (PredictionLog), layout 2: what each row of each table holds, and what it refuses.

Every column of every table holds the value it was given: a prediction, its
samples (the full probability vector, and the input as uint8 that decodes to
what the model saw, for a `log_inputs` share of requests), feedback for one
sample, refusals, heartbeats. A request id may repeat (a client's retry), also
within one group commit. A log of any other layout is refused at start, with
what to do, and left byte for byte as it was; so is a path the server could
not write (a user's mistake: one line, exit 2). `log_sync` is the SQLite
`synchronous` level the writing connection runs with, from the serve setting
to the log, also in every worker. The table and column names are spelled out
here, not taken from the module: `monitor` reads them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import sqlite3
import subprocess
import sys
import time
import zlib
from types import SimpleNamespace

import numpy as np
import pytest

from steps import contract
from steps.core.log_format import decode_input
from steps.parameters import UsageError
from steps.serve.predlog import PredictionLog
from steps.serve.runtime import ModelRef
from steps.serve.server import Server
from steps.serve.workers import worker_config
from steps.settings import ServeConfig
from tests.support.serving import StandInRegistry

REPLICA = "127.0.0.1:8080:4242"
CLASSES = ["cat", "dog", "emu"]
MODEL = SimpleNamespace(ref=ModelRef("digits", "7", "champion", "run-7"), class_names=CLASSES, sample_shape=(2, 2, 1))
LAYOUT = {  # the interface `monitor` and `update` read (issue 10's design), in column order
    "predictions": [
        "id",
        "request_id",
        "time",
        "replica",
        "endpoint",
        "model_name",
        "model_version",
        "latency_ms",
        "inference_ms",
        "n_samples",
        "input_shape",
        "input_mean",
        "input_std",
        "predicted_label",
        "probability",
    ],
    "samples": ["prediction_id", "sample_index", "predicted_class", "probabilities", "input"],
    "feedback": ["id", "request_id", "sample_index", "time", "true_label"],
    "refusals": ["id", "time", "replica", "endpoint", "status", "kind", "request_id"],
    "heartbeats": [
        "id",
        "time",
        "replica",
        "rss_bytes",
        "model_name",
        "model_version",
        "queue_depth",
        "requests_total",
    ],
}
# The layouts before this one: the first (request_id the primary key), and the one with a row id of its own.
FIRST_LAYOUT = """CREATE TABLE predictions (request_id TEXT PRIMARY KEY, time REAL NOT NULL, endpoint TEXT NOT NULL,
    model_name TEXT NOT NULL, model_version TEXT NOT NULL, latency_ms REAL NOT NULL, n_samples INTEGER NOT NULL,
    input_mean REAL NOT NULL, input_std REAL NOT NULL, predicted_label TEXT NOT NULL, probability REAL NOT NULL);
CREATE TABLE feedback (request_id TEXT NOT NULL, time REAL NOT NULL, true_label TEXT NOT NULL);
INSERT INTO predictions VALUES ('r1', 1.0, 'predict', 'digits', '1', 0.5, 1, 0.5, 0.1, '3', 0.9);"""
ROW_ID_LAYOUT = """CREATE TABLE predictions (id INTEGER PRIMARY KEY, request_id TEXT NOT NULL, time REAL NOT NULL,
    endpoint TEXT NOT NULL, model_name TEXT NOT NULL, model_version TEXT NOT NULL, latency_ms REAL NOT NULL,
    n_samples INTEGER NOT NULL, input_mean REAL NOT NULL, input_std REAL NOT NULL, predicted_label TEXT NOT NULL,
    probability REAL NOT NULL);
CREATE INDEX predictions_request ON predictions (request_id);
CREATE TABLE feedback (request_id TEXT NOT NULL, time REAL NOT NULL, true_label TEXT NOT NULL);
INSERT INTO predictions VALUES (1, 'r1', 1.0, 'predict', 'digits', '1', 0.5, 1, 0.5, 0.1, '3', 0.9);"""


def rows(path, table: str) -> list[dict]:
    with sqlite3.connect(path) as connection:
        connection.row_factory = sqlite3.Row
        return [dict(row) for row in connection.execute(f"SELECT * FROM {table} ORDER BY rowid")]


def logged(path, *calls, log_inputs: float = 1.0) -> None:
    """Run log calls (coroutine factories taking the log) concurrently, as one group commit, then close."""

    async def scenario():
        log = PredictionLog(path, REPLICA, log_inputs)
        try:
            await asyncio.gather(*(call(log) for call in calls))
        finally:
            log.close()

    asyncio.run(scenario())


def predict(request_id: str, batch: np.ndarray, probabilities: np.ndarray, model=MODEL, latency: float = 2.5):
    """A log_prediction call as the data plane makes it."""
    return lambda log: log.log_prediction(request_id, "invocations", model, latency, 0.25, batch, probabilities)


HALF_GREY_LEVEL = 0.5 / 255 + 1e-6  # uint8 rounding, and float32's own
BATCH = np.array([[0.0, 0.5], [1.0, 0.25], [-0.2, 1.3], [0.1, 0.9]], np.float32).reshape(2, 2, 2, 1)
PROBABILITIES = np.array([[0.2, 0.7, 0.1], [0.6, 0.3, 0.1]], np.float32)


def test_a_prediction_row_holds_every_value_it_was_given(tmp_path):
    path = tmp_path / "p.db"
    before = time.time()
    logged(path, predict("r1", BATCH, PROBABILITIES))
    (row,) = rows(path, "predictions")
    assert list(row) == LAYOUT["predictions"]
    assert row.pop("id") == 1 and before <= row.pop("time") <= time.time()
    mean, std = row.pop("input_mean"), row.pop("input_std")
    assert mean == pytest.approx(BATCH.mean()) and std == pytest.approx(BATCH.std(), rel=1e-5)
    assert row.pop("probability") == pytest.approx((0.7 + 0.6) / 2)
    assert row == {
        "request_id": "r1",
        "replica": REPLICA,
        "endpoint": "invocations",
        "model_name": "digits",
        "model_version": "7",
        "latency_ms": 2.5,
        "inference_ms": 0.25,
        "n_samples": 2,
        "input_shape": "2,2,1",
        "predicted_label": "dog,cat",
    }


def test_each_sample_holds_its_class_its_full_probabilities_and_the_input_the_model_saw(tmp_path):
    path = tmp_path / "p.db"
    logged(path, predict("r1", BATCH, PROBABILITIES))
    samples = rows(path, "samples")
    assert [list(sample) for sample in samples] == [LAYOUT["samples"]] * 2
    assert [(s["prediction_id"], s["sample_index"], s["predicted_class"]) for s in samples] == [(1, 0, 1), (1, 1, 0)]
    for sample, probabilities, seen in zip(samples, PROBABILITIES, BATCH):
        assert np.array_equal(np.frombuffer(sample["probabilities"], "<f4"), probabilities)  # float32, exactly
        pixels = np.frombuffer(zlib.decompress(sample["input"]), np.uint8)  # any zlib reader
        assert np.array_equal(pixels, np.rint(np.clip(seen.ravel(), 0, 1) * 255))
        decoded = decode_input(sample["input"], "2,2,1")
        assert decoded.shape == (2, 2, 1) and np.abs(decoded - np.clip(seen, 0, 1)).max() <= HALF_GREY_LEVEL


def test_a_handwriting_sized_input_is_deflated_a_tiny_or_photo_sized_one_stored_all_read_by_zlib(tmp_path):
    path = tmp_path / "p.db"
    large = SimpleNamespace(ref=MODEL.ref, class_names=CLASSES, sample_shape=(28, 28, 1))
    image = np.zeros((1, 28, 28, 1), np.float32)
    image[0, 8:20, 12:16] = 1.0  # a stroke on a blank field, as handwriting is
    photo_model = SimpleNamespace(ref=MODEL.ref, class_names=CLASSES, sample_shape=(64, 64, 3))
    photo = np.random.default_rng(0).random((1, 64, 64, 3), np.float32)  # sensor noise: deflate would gain little
    one = PROBABILITIES[:1]
    logged(
        path,
        predict("large", image, one, model=large),
        predict("small", BATCH[:1], one),
        predict("photo", photo, one, model=photo_model),
    )
    large_input, small_input, photo_input = [sample["input"] for sample in rows(path, "samples")]
    assert len(large_input) < 784 / 4 and np.array_equal(decode_input(large_input, "28,28,1"), image[0])
    assert len(small_input) == 4 + 11  # zlib's header, a stored block's, and the checksum around 4 pixels
    assert len(photo_input) == 64 * 64 * 3 + 11
    assert np.abs(decode_input(photo_input, "64,64,3") - photo[0]).max() <= HALF_GREY_LEVEL


def test_a_group_commit_with_two_models_of_other_shapes_keeps_each_input_whole(tmp_path):
    """Mid-swap, one group can hold requests for the old and the new version: their pixels are encoded together."""
    path = tmp_path / "p.db"
    other = SimpleNamespace(
        ref=ModelRef("digits", "8", "champion", "run-8"), class_names=CLASSES, sample_shape=(3, 1, 1)
    )
    small = np.array([0.1, 0.2, 0.3], np.float32).reshape(1, 3, 1, 1)
    logged(path, predict("a", BATCH, PROBABILITIES), predict("b", small, PROBABILITIES[:1], model=other))
    predictions = {row["request_id"]: row for row in rows(path, "predictions")}
    samples = rows(path, "samples")
    assert [sample["prediction_id"] for sample in samples] == [predictions["a"]["id"]] * 2 + [predictions["b"]["id"]]
    assert predictions["b"]["input_shape"] == "3,1,1" and predictions["b"]["model_version"] == "8"
    assert np.abs(decode_input(samples[2]["input"], "3,1,1") - small[0]).max() <= HALF_GREY_LEVEL
    assert np.abs(decode_input(samples[1]["input"], "2,2,1") - np.clip(BATCH[1], 0, 1)).max() <= HALF_GREY_LEVEL


@pytest.mark.parametrize(
    "share, kept", [(1.0, list(range(1, 21))), (0.0, []), (0.25, [4, 8, 12, 16, 20]), (0.3, [4, 7, 10, 14, 17, 20])]
)
def test_log_inputs_keeps_exactly_that_share_of_requests_spread_evenly(tmp_path, share, kept):
    path = tmp_path / "p.db"

    async def scenario():
        log = PredictionLog(path, REPLICA, share)
        try:
            for i in range(1, 21):  # one at a time: the order is the requests' order
                await predict(f"r{i}", BATCH, PROBABILITIES)(log)
        finally:
            log.close()

    asyncio.run(scenario())
    samples = rows(path, "samples")
    assert len(samples) == 40  # probabilities are always kept
    with_input = sorted({sample["prediction_id"] for sample in samples if sample["input"] is not None})
    assert with_input == kept and all(sample["probabilities"] for sample in samples)


def test_a_repeated_request_id_is_logged_again_also_within_one_group_commit(tmp_path):
    path = tmp_path / "p.db"
    retries = [predict("same", BATCH[:1], PROBABILITIES[:1], latency=i) for i in range(3)]
    logged(path, *retries, predict("other", BATCH, PROBABILITIES))
    predictions = rows(path, "predictions")
    assert [(row["id"], row["request_id"]) for row in predictions] == [
        (1, "same"),
        (2, "same"),
        (3, "same"),
        (4, "other"),
    ]
    assert [(s["prediction_id"], s["sample_index"]) for s in rows(path, "samples")] == [
        (1, 0),
        (2, 0),
        (3, 0),
        (4, 0),
        (4, 1),
    ]


def test_a_feedback_row_holds_the_request_id_sample_index_time_and_true_label(tmp_path):
    path = tmp_path / "p.db"
    logged(path, predict("r1", BATCH, PROBABILITIES))
    before = time.time()
    logged(path, lambda log: log.log_feedback("r1", 1, "emu"))
    (row,) = rows(path, "feedback")
    assert list(row) == LAYOUT["feedback"] and before <= row.pop("time") <= time.time()
    assert row == {"id": 1, "request_id": "r1", "sample_index": 1, "true_label": "emu"}


def test_a_refusal_is_committed_without_anyone_waiting_and_holds_what_it_was_given(tmp_path):
    path = tmp_path / "p.db"

    async def scenario():
        log = PredictionLog(path, REPLICA)
        try:
            log.log_refusal("invocations", 400, "BAD_REQUEST", "r9")  # not awaited: the answer is not held up
            await asyncio.sleep(0)  # the end of this loop iteration: the flush
            committed = rows(path, "refusals")
            log.log_refusal("other", 404, "NOT_FOUND", None)
        finally:
            log.close()  # commits what is still pending
        return committed

    before = time.time()
    committed = asyncio.run(scenario())
    assert len(committed) == 1
    logged_rows = rows(path, "refusals")
    assert [list(row) for row in logged_rows] == [LAYOUT["refusals"]] * 2
    assert all(before <= row.pop("time") <= time.time() for row in logged_rows)
    assert logged_rows == [
        {
            "id": 1,
            "replica": REPLICA,
            "endpoint": "invocations",
            "status": 400,
            "kind": "BAD_REQUEST",
            "request_id": "r9",
        },
        {"id": 2, "replica": REPLICA, "endpoint": "other", "status": 404, "kind": "NOT_FOUND", "request_id": None},
    ]


def test_a_heartbeat_holds_memory_model_queue_depth_and_requests(tmp_path):
    path = tmp_path / "p.db"
    logged(path, lambda log: log.log_heartbeat(123_456_789, MODEL.ref, 3, 42))
    logged(path, lambda log: log.log_heartbeat(1000, None, 0, 0))  # no model loaded yet
    beats = rows(path, "heartbeats")
    assert [list(row) for row in beats] == [LAYOUT["heartbeats"]] * 2
    assert [row.pop("time") <= time.time() for row in beats] == [True, True]
    assert beats == [
        {
            "id": 1,
            "replica": REPLICA,
            "rss_bytes": 123_456_789,
            "model_name": "digits",
            "model_version": "7",
            "queue_depth": 3,
            "requests_total": 42,
        },
        {
            "id": 2,
            "replica": REPLICA,
            "rss_bytes": 1000,
            "model_name": None,
            "model_version": None,
            "queue_depth": 0,
            "requests_total": 0,
        },
    ]


def test_the_file_is_marked_layout_2_and_has_exactly_the_tables_monitor_reads(tmp_path):
    path = tmp_path / "p.db"
    logged(path)
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == 2
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = [name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        assert {table: [c[1] for c in connection.execute(f"PRAGMA table_info({table})")] for table in tables} == LAYOUT


def test_a_log_of_this_layout_opens_again_and_keeps_counting(tmp_path):
    path = tmp_path / "p.db"
    logged(path, predict("r1", BATCH, PROBABILITIES))
    logged(path, predict("r2", BATCH[:1], PROBABILITIES[:1]))
    assert [row["id"] for row in rows(path, "predictions")] == [1, 2]
    assert [s["prediction_id"] for s in rows(path, "samples")] == [1, 1, 2]


def test_samples_of_a_request_id_is_the_largest_batch_logged_with_it(tmp_path):
    async def scenario():
        log = PredictionLog(tmp_path / "p.db", REPLICA)
        try:
            await asyncio.gather(
                predict("r1", BATCH[:1], PROBABILITIES[:1])(log), predict("r1", BATCH, PROBABILITIES)(log)
            )
            return log.samples_of("r1"), log.samples_of("r2")
        finally:
            log.close()

    assert asyncio.run(scenario()) == (2, None)


def test_a_failed_commit_fails_every_waiting_request_and_keeps_none_of_their_rows(tmp_path):
    path = tmp_path / "p.db"

    async def scenario():
        log = PredictionLog(path, REPLICA)
        try:
            with sqlite3.connect(path) as other:  # the table goes away behind the server's back
                other.execute("DROP TABLE samples")
            outcomes = await asyncio.gather(
                predict("r1", BATCH, PROBABILITIES)(log),
                log.log_feedback("r0", 0, "cat"),
                return_exceptions=True,
            )
        finally:
            log.close()
        return outcomes

    outcomes = asyncio.run(scenario())
    assert [type(outcome) for outcome in outcomes] == [sqlite3.OperationalError] * 2
    assert rows(path, "predictions") == [] and rows(path, "feedback") == []


def digest(path) -> dict[str, str | None]:
    """The file's and its WAL's bytes, hashed; which of its side files exist."""
    hashed = {
        suffix: hashlib.sha256(open(f"{path}{suffix}", "rb").read()).hexdigest()
        for suffix in ("", "-wal")
        if os.path.exists(f"{path}{suffix}")
    }
    return hashed | {"-shm exists": str(os.path.exists(f"{path}-shm"))}


def killed_writer(path, layout: str) -> None:
    """A server of an older layout, killed with -9: its rows are still in the WAL, not in the file."""
    script = (
        "import os, sqlite3, sys\n"
        "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "c.execute('PRAGMA journal_mode=WAL'); c.execute('PRAGMA wal_autocheckpoint=0')\n"
        "c.executescript(sys.argv[2])\n"
        "os.kill(os.getpid(), 9)\n"
    )
    subprocess.run([sys.executable, "-c", script, str(path), layout])
    assert os.path.getsize(f"{path}-wal") > 0


@pytest.mark.parametrize(
    "layout, words",
    [
        (FIRST_LAYOUT, "has an older layout"),
        (ROW_ID_LAYOUT, "has an older layout"),
        ("killed", "has an older layout"),
        (ROW_ID_LAYOUT + "PRAGMA user_version = 3;", "written by a newer server \\(layout 3"),
        ("CREATE TABLE experiments (id INTEGER); PRAGMA user_version = 0;", "is not a prediction log"),
        ("CREATE TABLE predictions (id INTEGER PRIMARY KEY); PRAGMA user_version = 2;", "has table predictions with"),
        ("not a database", "is not a SQLite database"),
    ],
    ids=[
        "first-layout",
        "row-id-layout",
        "row-id-layout-killed",
        "newer",
        "another-database",
        "layout-2-altered",
        "not-sqlite",
    ],
)
def test_a_log_of_another_layout_is_refused_with_what_to_do_and_left_byte_for_byte(tmp_path, layout, words):
    path = tmp_path / "old.db"
    if layout == "killed":
        killed_writer(path, ROW_ID_LAYOUT)
    elif layout == "not a database":
        path.write_bytes(b"SQLite format 2 and then some " * 100)
    else:
        with sqlite3.connect(path) as connection:
            connection.executescript(layout)
    before = digest(path)
    with pytest.raises(UsageError, match=f"{words}.*move it away or pass another --prediction_log") as refused:
        PredictionLog(path, REPLICA)
    assert str(path) in str(refused.value) and "nothing in it was changed" in str(refused.value)
    assert digest(path) == before


def test_an_empty_file_or_an_empty_database_becomes_a_log(tmp_path):
    empty = tmp_path / "empty.db"
    empty.touch()
    sqlite3.connect(tmp_path / "nothing.db").close()
    for path in (empty, tmp_path / "nothing.db"):
        logged(path, predict("r1", BATCH, PROBABILITIES))
        assert len(rows(path, "samples")) == 2


@pytest.mark.parametrize(
    "where, words",
    [
        ("missing/p.db", "folder .*missing does not exist; create it \\(mkdir -p\\)"),
        ("a-file/p.db", "a-file is a file, not a folder"),
        ("a-folder", "is a folder; pass a file in it, e.g. .*a-folder/predictions.db"),
    ],
    ids=["missing-folder", "file-as-folder", "folder-as-file"],
)
def test_a_log_the_server_cannot_create_is_a_usage_error_naming_the_path_and_creating_nothing(tmp_path, where, words):
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "a-folder").mkdir()
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(UsageError, match=words) as refused:
        PredictionLog(tmp_path / where, REPLICA)
    assert f"prediction_log {tmp_path / where}" in str(refused.value) and "\n" not in str(refused.value)
    assert sorted(tmp_path.rglob("*")) == before


@pytest.mark.parametrize("log_sync, level", [(contract.LOG_SYNC_NORMAL, 1), (contract.LOG_SYNC_FULL, 2)])
def test_log_sync_is_the_synchronous_level_of_the_connection_that_commits(tmp_path, log_sync, level):
    """SQLite's PRAGMA synchronous: 1 NORMAL (WAL frames written, no fsync), 2 FULL (fsync at every commit).
    It belongs to the connection, not the file: asked of the one the server writes with, not of a new one."""
    log = PredictionLog(tmp_path / "p.db", REPLICA, log_sync=log_sync)
    try:
        assert log._connection.execute("PRAGMA synchronous").fetchone()[0] == level
        assert log._connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        log.close()
    logged(tmp_path / "p.db", predict("r1", BATCH, PROBABILITIES))  # and the file is a log like any other
    assert len(rows(tmp_path / "p.db", "predictions")) == 1
    config = ServeConfig(prediction_log=str(tmp_path / "s.db"), log_sync=log_sync, poll_seconds=0)
    registry = StandInRegistry(tmp_path)  # nothing is fetched: the server is made, not started
    server = Server(config, download=registry.download, lookup=registry.lookup)
    try:
        assert server.predlog._connection.execute("PRAGMA synchronous").fetchone()[0] == level
    finally:
        server.predlog.close()
    worker = worker_config(dataclasses.replace(config, workers=3), 2)
    assert (worker.log_sync, worker.workers, worker.prediction_log) == (log_sync, 1, str(tmp_path / "s.worker2.db"))
