"""The durable prediction log: every prediction and feedback, for `monitor` and `update`.

SQLite in WAL mode, written by one thread that commits whatever has queued up
(group commit: no timer, so an idle server commits each record at once). A
request is acknowledged only after its record is committed; a committed WAL
frame is in the operating system's hands, so it survives kill -9 of the
server (power loss needs synchronous=FULL, a setting away).
"""

from __future__ import annotations

import asyncio
import json
import queue
import sqlite3
import threading
import time
from concurrent.futures import Future
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    request_id TEXT PRIMARY KEY,
    time REAL NOT NULL,
    endpoint TEXT NOT NULL,
    model_name TEXT NOT NULL,
    model_version TEXT NOT NULL,
    latency_ms REAL NOT NULL,
    input_summary TEXT NOT NULL,
    predicted_label TEXT NOT NULL,
    probability REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS feedback (
    request_id TEXT NOT NULL,
    time REAL NOT NULL,
    true_label TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS feedback_request ON feedback (request_id);
"""
MAX_GROUP = 1024  # records per commit at most
_STOP = object()


class PredictionLog:
    def __init__(self, path: str | Path, synchronous: str = "NORMAL"):
        self.path = str(path)
        self._queue: queue.Queue = queue.Queue()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._write_loop, args=(synchronous,), name="predlog", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error:
            raise self._error
        self._reader = sqlite3.connect(self.path, check_same_thread=False)

    def _write_loop(self, synchronous: str) -> None:
        try:
            connection = sqlite3.connect(self.path)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute(f"PRAGMA synchronous={synchronous}")
            connection.executescript(SCHEMA)
        except BaseException as error:  # unwritable path, not a database: reported by __init__
            self._error = error
            self._ready.set()
            return
        self._ready.set()
        while True:
            group = [self._queue.get()]
            while len(group) < MAX_GROUP:
                try:
                    group.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = any(item is _STOP for item in group)
            items = [item for item in group if item is not _STOP]
            try:
                with connection:  # one transaction, committed on exit
                    for sql, row, _ in items:
                        connection.execute(sql, row)
            except BaseException as error:
                for *_, done in items:
                    done.set_exception(error)
            else:
                for *_, done in items:
                    done.set_result(None)
            if stop:
                connection.close()
                return

    def _submit(self, sql: str, row: tuple) -> Future:
        done: Future = Future()
        self._queue.put((sql, row, done))
        return done

    async def log_prediction(
        self,
        request_id: str,
        endpoint: str,
        model_name: str,
        model_version: str,
        latency_ms: float,
        input_summary: dict,
        predicted_label: str,
        probability: float,
    ) -> None:
        """Returns once the record is committed."""
        row = (
            request_id,
            time.time(),
            endpoint,
            model_name,
            model_version,
            latency_ms,
            json.dumps(input_summary),
            predicted_label,
            probability,
        )
        await asyncio.wrap_future(self._submit("INSERT INTO predictions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", row))

    async def log_feedback(self, request_id: str, true_label: str) -> None:
        row = (request_id, time.time(), true_label)
        await asyncio.wrap_future(self._submit("INSERT INTO feedback VALUES (?, ?, ?)", row))

    def has_prediction(self, request_id: str) -> bool:
        found = self._reader.execute("SELECT 1 FROM predictions WHERE request_id = ?", (request_id,)).fetchone()
        return found is not None

    def close(self) -> None:
        self._queue.put(_STOP)
        self._thread.join(timeout=10)
        self._reader.close()
