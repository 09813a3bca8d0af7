"""The durable prediction log: every prediction and feedback, for `monitor` and `update`.

SQLite in WAL mode, written on the event loop with group commit: a request
adds its row and waits; the first one schedules a flush for the end of the
current loop iteration, which writes every row that has gathered by then in
one transaction. No thread hand-offs, no timer: an idle server commits each
row at once, a busy one commits many per transaction. A request is
acknowledged only after its row is committed; a committed WAL frame is in the
operating system's hands, so it survives kill -9 of the server (power loss
needs synchronous=FULL, a setting away).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np

from steps.serve.runtime import ModelRef

PREDICTION_COLUMNS = {  # `monitor` and `update` read these
    "id": "INTEGER PRIMARY KEY",  # a row id of its own: a client's retry repeats its request id
    "request_id": "TEXT NOT NULL",
    "time": "REAL NOT NULL",
    "endpoint": "TEXT NOT NULL",
    "model_name": "TEXT NOT NULL",
    "model_version": "TEXT NOT NULL",
    "latency_ms": "REAL NOT NULL",
    "n_samples": "INTEGER NOT NULL",
    "input_mean": "REAL NOT NULL",
    "input_std": "REAL NOT NULL",
    "predicted_label": "TEXT NOT NULL",
    "probability": "REAL NOT NULL",
}
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS predictions ({", ".join(f"{name} {kind}" for name, kind in PREDICTION_COLUMNS.items())});
CREATE INDEX IF NOT EXISTS predictions_request ON predictions (request_id);
CREATE TABLE IF NOT EXISTS feedback (request_id TEXT NOT NULL, time REAL NOT NULL, true_label TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS feedback_request ON feedback (request_id);
"""
LOGGED_COLUMNS = [name for name in PREDICTION_COLUMNS if name != "id"]  # the row id is SQLite's to give
INSERT_PREDICTION = (
    f"INSERT INTO predictions ({', '.join(LOGGED_COLUMNS)}) VALUES ({', '.join('?' * len(LOGGED_COLUMNS))})"
)
INSERT_FEEDBACK = "INSERT INTO feedback VALUES (?, ?, ?)"
CHECKPOINT_SECONDS = 1.0


def _check_layout(connection: sqlite3.Connection, path: str) -> None:
    """A log of another layout (an older server's) cannot take today's rows: say so at start, not per request."""
    expected = list(PREDICTION_COLUMNS)
    found = [row[1] for row in connection.execute("PRAGMA table_info(predictions)")]
    if found and found != expected:
        connection.close()
        raise ValueError(
            f"prediction log {path} has columns {found}, not {expected}; "
            "move it away or pass another --prediction_log (nothing in it was changed)"
        )


class PredictionLog:
    def __init__(self, path: str | Path, synchronous: str = "NORMAL"):
        self.path = str(path)
        self._connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        _check_layout(self._connection, self.path)  # before anything is written to the file
        self._connection.execute("PRAGMA journal_mode=WAL")
        self._connection.execute(f"PRAGMA synchronous={synchronous}")
        self._connection.executescript(SCHEMA)
        # Checkpoints copy the WAL into the database and fsync: tens of milliseconds that must not
        # stall the event loop. A background thread runs them (PASSIVE: never blocks the writer).
        self._connection.execute("PRAGMA wal_autocheckpoint=0")
        self._pending: list[tuple[str, tuple, asyncio.Future]] = []
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

    async def _write(self, sql: str, row: tuple) -> None:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append((sql, row, done))
        await done

    def _flush(self) -> None:
        group, self._pending = self._pending, []
        try:
            self._connection.execute("BEGIN")
            for sql in {sql for sql, _, _ in group}:
                self._connection.executemany(sql, [row for each, row, _ in group if each == sql])
            self._connection.execute("COMMIT")
        except Exception as error:  # disk full, file removed: every waiting request learns it
            if self._connection.in_transaction:
                self._connection.execute("ROLLBACK")
            for *_, done in group:
                if not done.done():
                    done.set_exception(error)
            return
        for *_, done in group:
            if not done.done():
                done.set_result(None)

    async def log_prediction(
        self,
        request_id: str,
        endpoint: str,
        model: ModelRef,
        latency_ms: float,
        input_summary: tuple[int, float, float],
        predicted_label: str,
        probability: float,
    ) -> None:
        """Returns once the row is committed. input_summary: samples, pixel mean, pixel std."""
        row = (request_id, time.time(), endpoint, model.name, model.version, latency_ms, *input_summary,
               predicted_label, probability)  # fmt: skip
        await self._write(INSERT_PREDICTION, row)

    async def log_feedback(self, request_id: str, true_label: str) -> None:
        await self._write(INSERT_FEEDBACK, (request_id, time.time(), true_label))

    def has_prediction(self, request_id: str) -> bool:
        found = self._connection.execute("SELECT 1 FROM predictions WHERE request_id = ?", (request_id,)).fetchone()
        return found is not None

    def close(self) -> None:
        self._stop.set()
        self._checkpointer.join(timeout=10)
        self._connection.close()


def input_summary(batch: np.ndarray) -> tuple[int, float, float]:
    """What the log keeps of an input, for drift statistics: samples, pixel mean and std."""
    flat = batch.ravel()
    mean = float(flat.sum(dtype=np.float64)) / flat.size
    variance = float(np.dot(flat, flat)) / flat.size - mean * mean  # one pass; numpy's std() takes 6x longer
    return len(batch), mean, max(variance, 0.0) ** 0.5


def top_labels(probabilities: np.ndarray, class_names: list[str]) -> tuple[str, float]:
    """What the log keeps of a prediction: the top labels, comma-separated, and their mean probability."""
    top = probabilities.argmax(axis=1).tolist()
    rows = probabilities.tolist()
    labels = ",".join([class_names[i] for i in top])
    return labels, sum(row[i] for row, i in zip(rows, top)) / len(top)
