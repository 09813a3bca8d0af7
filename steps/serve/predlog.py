"""The prediction log's writer: predictions with their samples, feedback, refused requests and heartbeats, in
the format of steps/core/log_format.py (the tables `monitor` and `update` read).

SQLite in WAL mode, written on the event loop with group commit: a request
adds its rows and waits; the first one schedules a flush for the end of the
current loop iteration, which writes every row that has gathered by then in
one transaction. No thread hand-offs, no timer: an idle server commits each
row at once, a busy one commits many per transaction. A request is
acknowledged only after its rows are committed. How hard a commit holds is
`log_sync` (SQLite's `synchronous`): `normal` (synchronous=NORMAL) hands the
WAL frames to the operating system without an fsync, so an acknowledged row
survives a crash or kill -9 of the server, not a power loss or a kernel
crash, which can lose the last commits (the database stays consistent);
`full` (synchronous=FULL) fsyncs the WAL at every commit, once per group, on
the loop (a few milliseconds on an ordinary disk, during which the server
answers nobody), so an acknowledged row survives a power loss too. Refusals
are not waited for: the error answer goes out at once and its row joins the
next commit.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np

from steps import contract
from steps.core.log_format import (
    INSERT_FEEDBACK,
    INSERT_HEARTBEAT,
    INSERT_PREDICTION,
    INSERT_REFUSAL,
    INSERT_SAMPLE,
    INSERT_SAMPLE_WITHOUT_INPUT,
    LAYOUT,
    SCHEMA,
    TABLES,
    decode_input,
    encode_inputs,
    encode_probabilities,
    shape_text,
)
from steps.core.sqlite_files import read_only
from steps.parameters import UsageError
from steps.serve.runtime import ModelRef, ServedModel

log = logging.getLogger("rtdeploy.serve")
CHECKPOINT_SECONDS = 1.0
WHAT_TO_DO = "move it away or pass another --prediction_log (nothing in it was changed)"
SYNCHRONOUS = {contract.LOG_SYNC_NORMAL: "NORMAL", contract.LOG_SYNC_FULL: "FULL"}  # log_sync -> PRAGMA synchronous


def check_writable(path: str) -> None:
    """Refuse a log this user could not create or add to, in one line, before anything is loaded.

    SQLite writes two files beside the log in WAL mode (-wal, -shm), so its
    folder must be writable even when the log itself exists.
    """
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise UsageError(
            f"prediction_log {path} is a folder; pass a file in it, e.g. {os.path.join(path, 'predictions.db')}"
        )
    if not os.path.isdir(folder):
        elsewhere = "pass a --prediction_log in an existing folder"
        if os.path.exists(folder):
            raise UsageError(f"prediction_log {path}: {folder} is a file, not a folder; {elsewhere}")
        raise UsageError(f"prediction_log {path}: folder {folder} does not exist; create it (mkdir -p) or {elsewhere}")
    if not os.access(folder, os.W_OK | os.X_OK) or (os.path.exists(path) and not os.access(path, os.R_OK | os.W_OK)):
        raise UsageError(
            f"prediction_log {path} cannot be written by this user (it and its folder {folder} must be writable); "
            "pass a --prediction_log in a folder you can write"
        )


def check_layout(path: str) -> None:
    """Refuse a file this server cannot add to (an older or newer layout, another database), before writing.

    Read through `read_only`: nothing about the file changes.
    """
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return  # a new log
    try:
        with read_only(path) as connection:
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            found = {
                table: [row[0] for row in connection.execute("SELECT name FROM pragma_table_info(?)", (table,))]
                for (table,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
    except sqlite3.DatabaseError as error:
        raise UsageError(f"prediction log {path} is not a SQLite database ({error}); {WHAT_TO_DO}") from None
    if not found:
        return  # an empty database
    if version > LAYOUT:
        raise UsageError(
            f"prediction log {path} was written by a newer server (layout {version}; this one writes {LAYOUT}): "
            f"serve with that version, or {WHAT_TO_DO}"
        )
    if version < LAYOUT and "predictions" in found:
        raise UsageError(
            f"prediction log {path} has an older layout (predictions columns {found['predictions']}, no per-sample "
            f"probabilities or inputs) than this server writes (layout {LAYOUT}); keep it for reading, and "
            f"{WHAT_TO_DO}"
        )
    if version < LAYOUT:
        raise UsageError(
            f"{path} is not a prediction log (it holds tables {sorted(found)}); {WHAT_TO_DO}, e.g. predictions.db"
        )
    for table, columns in TABLES.items():
        if table in found and found[table] != list(columns):
            raise UsageError(
                f"prediction log {path} has table {table} with columns {found[table]}, not {list(columns)}; "
                f"{WHAT_TO_DO}"
            )


class PredictionLog:
    def __init__(
        self, path: str | Path, replica: str, log_inputs: float = 1.0, log_sync: str = contract.LOG_SYNC_NORMAL
    ):
        """replica: host:port:pid of the server; log_inputs: share of prediction requests whose inputs are kept;
        log_sync: how hard a commit holds (`contract.LOG_SYNC_MODES`, see the module's docstring)."""
        self.path = str(path)
        self.replica = replica
        self.log_inputs = log_inputs
        self._requests_seen = self._inputs_kept = 0  # for log_inputs
        check_writable(self.path)
        check_layout(self.path)  # before anything is written to the file
        try:
            self._connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._connection.execute("PRAGMA journal_mode=WAL")
            self._connection.execute(f"PRAGMA synchronous={SYNCHRONOUS[log_sync]}")
            self._connection.executescript(f"BEGIN; {SCHEMA} PRAGMA user_version = {LAYOUT}; COMMIT;")
        except sqlite3.OperationalError as error:  # read-only file system, disk full, locked by another program
            raise UsageError(
                f"prediction_log {self.path} cannot be written ({error}); pass a --prediction_log on a writable disk "
                "with free space, used by no other program"
            ) from None
        # Checkpoints copy the WAL into the database and fsync: tens of milliseconds that must not
        # stall the event loop. A background thread runs them (PASSIVE: never blocks the writer).
        self._connection.execute("PRAGMA wal_autocheckpoint=0")
        self._predictions: list[tuple] = []  # (row, top classes, probabilities, input or None, waiter)
        self._rows: list[tuple[str, tuple, asyncio.Future | None]] = []  # other tables' rows; None: nobody waits
        self._flush_scheduled = False
        self._stop = threading.Event()
        self._checkpointer = threading.Thread(target=self._checkpoint_loop, name="predlog-checkpoint", daemon=True)
        self._checkpointer.start()

    def _checkpoint_loop(self) -> None:
        connection = sqlite3.connect(self.path, isolation_level=None)
        try:
            while not self._stop.wait(CHECKPOINT_SECONDS):
                connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            connection.close()

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    async def _write(self, sql: str, row: tuple) -> None:
        done = asyncio.get_running_loop().create_future()
        self._schedule_flush()
        self._rows.append((sql, row, done))
        await done

    def _flush(self) -> None:
        self._flush_scheduled = False
        predictions, self._predictions = self._predictions, []
        rows, self._rows = self._rows, []
        if not predictions and not rows:
            return
        connection = self._connection
        try:
            samples = sample_rows(predictions)  # numbered from 1: ids less the last id so far
            connection.execute("BEGIN IMMEDIATE")
            if predictions:  # ids given here, in the write transaction, so each sample row can name its prediction
                last = connection.execute("SELECT coalesce(max(id), 0) FROM predictions").fetchone()[0]
                connection.executemany(
                    INSERT_PREDICTION, [(last + i, *pending[0]) for i, pending in enumerate(predictions, 1)]
                )
                for sql, rows_of in ((INSERT_SAMPLE, samples[0]), (INSERT_SAMPLE_WITHOUT_INPUT, samples[1])):
                    if rows_of:
                        connection.executemany(sql, [(last + number, *sample) for number, *sample in rows_of])
            for sql in {sql for sql, _, _ in rows}:
                connection.executemany(sql, [row for each, row, _ in rows if each == sql])
            connection.execute("COMMIT")
        except Exception as error:  # disk full, file removed: every waiting request learns it
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            waiters = [pending[-1] for pending in predictions + rows if pending[-1] is not None]
            if len(waiters) < len(predictions) + len(rows):
                log.error("refusals not logged: %s", error)
            for done in waiters:
                if not done.done():
                    done.set_exception(error)
            return
        for *_, done in predictions:
            if not done.done():  # a client that went away cancelled its request
                done.set_result(None)
        for _, _, done in rows:
            if done is not None and not done.done():
                done.set_result(None)

    async def log_prediction(
        self,
        request_id: str,
        endpoint: str,
        model: ServedModel,
        latency_ms: float,
        inference_ms: float,
        batch: np.ndarray,
        probabilities: np.ndarray,
    ) -> None:
        """Log a prediction and its samples (batch: the model's preprocessed input); returns once committed.

        The samples' rows are made in the flush, for the whole group at once: a
        numpy pass over 16 requests' pixels costs what one over a single request
        does.
        """
        top = probabilities.argmax(axis=1).tolist()
        labels, probability = top_labels(probabilities, top, model.class_names)
        n, mean, std = input_summary(batch)
        row = (
            request_id,
            time.time(),
            self.replica,
            endpoint,
            model.ref.name,
            model.ref.version,
            latency_ms,
            inference_ms,
            n,
            shape_text(model.sample_shape),
            mean,
            std,
            labels,
            probability,
        )
        done = asyncio.get_running_loop().create_future()
        self._schedule_flush()
        self._predictions.append((row, top, probabilities, batch if self._keep_input() else None, done))
        await done

    def _keep_input(self) -> bool:
        """Whether this request's input is kept: exactly a log_inputs share, spread evenly (deterministic)."""
        self._requests_seen += 1
        due = int(self._requests_seen * self.log_inputs)
        if due > self._inputs_kept:
            self._inputs_kept = due
            return True
        return False

    async def log_feedback(self, request_id: str, sample_index: int, true_label: str) -> None:
        await self._write(INSERT_FEEDBACK, (request_id, sample_index, time.time(), true_label))

    def log_refusal(self, endpoint: str, status: int, kind: str, request_id: str | None) -> None:
        """Logged with the next commit; nobody waits for it (an error answer is not held up by the log)."""
        self._schedule_flush()
        self._rows.append((INSERT_REFUSAL, (time.time(), self.replica, endpoint, status, kind, request_id), None))

    async def log_heartbeat(
        self, rss_bytes: int, model: ModelRef | None, queue_depth: int, requests_total: int
    ) -> None:
        name, version = (model.name, model.version) if model else (None, None)
        row = (time.time(), self.replica, rss_bytes, name, version, queue_depth, requests_total)
        await self._write(INSERT_HEARTBEAT, row)

    def samples_of(self, request_id: str) -> int | None:
        """The most samples any prediction logged with request_id had; None if there is none."""
        query = "SELECT max(n_samples) FROM predictions WHERE request_id = ?"
        return self._connection.execute(query, (request_id,)).fetchone()[0]

    def input_of(self, request_id: str, index: int = 0) -> np.ndarray | None:
        """The input the log kept for sample `index` of the newest prediction with request_id; None if none is."""
        query = (
            "SELECT s.input, p.input_shape FROM samples s JOIN predictions p ON s.prediction_id = p.id "
            "WHERE p.request_id = ? AND s.sample_index = ? AND s.input IS NOT NULL ORDER BY p.id DESC LIMIT 1"
        )
        row = self._connection.execute(query, (request_id, index)).fetchone()
        return None if row is None else decode_input(*row)

    def close(self) -> None:
        self._flush()  # refusals still waiting for a commit
        self._stop.set()
        self._checkpointer.join(timeout=10)
        self._connection.close()


def input_summary(batch: np.ndarray) -> tuple[int, float, float]:
    """Samples, pixel mean and std of a batch: a drift signal readable without decoding the inputs."""
    flat = batch.ravel()
    mean = float(flat.sum(dtype=np.float64)) / flat.size
    variance = float(np.dot(flat, flat)) / flat.size - mean * mean  # one pass; numpy's std() takes 6x longer
    return len(batch), mean, max(variance, 0.0) ** 0.5


def top_labels(probabilities: np.ndarray, top: list[int], class_names: list[str]) -> tuple[str, float]:
    """The top labels (top: each sample's most likely class), comma-separated, and their mean probability."""
    rows = probabilities.tolist()
    labels = ",".join([class_names[i] for i in top])
    return labels, sum(row[i] for row, i in zip(rows, top)) / len(top)


def sample_rows(predictions: list[tuple]) -> tuple[list[tuple], list[tuple]]:
    """The rows of every sample with its input, and of every one without: (number of the prediction from 1,
    sample_index, predicted_class, probabilities[, input]).

    Blobs are bytearrays and missing inputs are left out rather than None:
    sqlite3 binds those two without looking for an adapter (3-4k instructions a
    value, a tenth of the row's insert).
    """
    kept = [batch for _, _, _, batch, _ in predictions if batch is not None]
    inputs = iter(encode_inputs(kept)) if kept else None
    with_input, without_input = [], []
    for number, (_, top, probabilities, batch, _) in enumerate(predictions, 1):
        vectors = probabilities
        for i, predicted in enumerate(top):
            if batch is None:
                without_input.append((number, i, predicted, encode_probabilities(vectors[i])))
            else:
                with_input.append((number, i, predicted, encode_probabilities(vectors[i]), next(inputs)))
    return with_input, without_input


def replica_name(host: str, port: int) -> str:
    """host:port:pid: which server process wrote a row, when several write logs side by side."""
    return f"{host}:{port}:{os.getpid()}"
