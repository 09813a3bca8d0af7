"""Read what servers logged: one or more prediction logs (one per replica), read-only, merged into one table set.

The layout is the server's (steps/serve/predlog.py, `PRAGMA user_version = 2`).
Files are opened with SQLite's read-only mode, so reading a log a server is
still writing is safe and nothing in any file changes. Every problem with a
file (missing, not SQLite, truncated, another layout) is a `LogError` naming
the file and the fix.
"""

from __future__ import annotations

import contextlib
import glob
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from steps import contract
from steps.core.log_format import LAYOUT, TABLES, decode_input, decode_probabilities
from steps.core.sqlite_files import read_only
from steps.parameters import UsageError


class LogError(UsageError):
    """A prediction log that cannot be read as asked; the message names the file and the fix."""


@dataclass
class Traffic:
    """Rows of every log in a time range. Samples carry their prediction's columns; probabilities and inputs
    are decoded (inputs: float32 in [0, 1], None where the server kept none)."""

    predictions: pd.DataFrame  # one row per prediction request
    samples: pd.DataFrame  # one row per sample, with its prediction's time, version, replica, request id
    probabilities: np.ndarray  # (len(samples), n_classes), row-aligned with samples
    inputs: list[np.ndarray | None]  # row-aligned with samples
    feedback: pd.DataFrame  # request_id, sample_index, time, true_label (the newest label per sample)
    refusals: pd.DataFrame
    heartbeats: pd.DataFrame


def utc(seconds: float) -> str:
    """Unix seconds as people read them in reports: 2026-11-29 10:00:00 UTC."""
    return f"{datetime.fromtimestamp(seconds, timezone.utc):%Y-%m-%d %H:%M:%S} UTC"


def parse_time(text: str, name: str) -> float | None:
    """Unix seconds, or an ISO time (UTC unless it says otherwise); empty: no bound."""
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{name}={text!r} is not a time; use ISO (2026-11-29T10:00) or unix seconds") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


def log_files(spec: str) -> list[Path]:
    """A path, a comma-separated list of paths, or glob patterns -> existing files, each once, sorted."""
    files = []
    for part in (piece.strip() for piece in spec.split(",")):
        if not part:
            continue
        matches = sorted(glob.glob(part)) if glob.has_magic(part) else _with_worker_logs(part)
        if not matches:
            raise LogError(
                f"prediction_log {part!r} matches no file; pass the --prediction_log the server writes "
                "(a path, a comma-separated list, or a glob such as 'predictions-*.db')"
            )
        files += matches
    if not files:
        raise LogError("prediction_log is empty; pass the file(s) the server writes")
    return [Path(name) for name in dict.fromkeys(files)]


def _with_worker_logs(path: str) -> list[str]:
    """The file itself if it exists, and the logs of a multi-process server's workers named after it."""
    workers = sorted(glob.glob(contract.worker_log_path(glob.escape(path), "*")))
    return ([path] if Path(path).is_file() else []) + workers


def read(files: list[Path], since: float | None = None, until: float | None = None) -> Traffic:
    """All rows with since <= time < until (None: no bound), from every file, merged and sorted by time."""
    tables = {name: [] for name in TABLES}
    for path in files:
        for name, frame in _read_file(path, since, until).items():
            tables[name].append(frame.assign(log=str(path)))
    frames = {name: pd.concat(parts, ignore_index=True) for name, parts in tables.items()}
    predictions = frames["predictions"].sort_values("time", kind="stable", ignore_index=True)
    # A sample belongs to its file's prediction: ids are unique only within one file.
    samples = (
        frames["samples"]
        .merge(
            predictions[
                ["log", "id", "time", "request_id", "replica", "endpoint", "model_name", "model_version", "input_shape"]
            ],
            left_on=["log", "prediction_id"],
            right_on=["log", "id"],
            how="inner",
        )
        .sort_values(["time", "sample_index"], kind="stable", ignore_index=True)
    )
    probabilities = decode_probabilities(samples["probabilities"])
    inputs = [decode_input(blob, shape) for blob, shape in zip(samples["input"], samples["input_shape"])]
    feedback = (
        frames["feedback"]
        .sort_values("time", kind="stable")
        .drop_duplicates(["request_id", "sample_index"], keep="last")
    )
    return Traffic(
        predictions=predictions,
        samples=samples.drop(columns=["probabilities", "input"]),
        probabilities=probabilities,
        inputs=inputs,
        feedback=feedback.reset_index(drop=True),
        refusals=frames["refusals"].sort_values("time", kind="stable", ignore_index=True),
        heartbeats=frames["heartbeats"].sort_values("time", kind="stable", ignore_index=True),
    )


def labelled_rows(traffic: Traffic) -> pd.DataFrame:
    """Every sample with a true label, once per (request id, sample): a request the client retried under the same
    id counts once, as its last attempt (the answer the client kept). `row` is the sample's position in
    traffic.samples (and in its probabilities and inputs). Monitor's live accuracy and update's data read this."""
    samples = traffic.samples.assign(row=np.arange(len(traffic.samples)))
    latest = samples.drop_duplicates(["request_id", "sample_index"], keep="last")  # samples are in time order
    feedback = traffic.feedback[["request_id", "sample_index", "true_label"]]
    return latest.merge(feedback, on=["request_id", "sample_index"], how="inner")


def time_range(files: list[Path]) -> tuple[float, float] | None:
    """The first and last time any prediction or refusal was logged, or None for empty logs."""
    bounds = []
    for path in files:
        with _open(path) as connection:
            for table in ("predictions", "refusals"):
                low, high = connection.execute(f"SELECT MIN(time), MAX(time) FROM {table}").fetchone()
                if low is not None:
                    bounds.append((low, high))
    if not bounds:
        return None
    return min(low for low, _ in bounds), max(high for _, high in bounds)


def _read_file(path: Path, since: float | None, until: float | None) -> dict[str, pd.DataFrame]:
    where, arguments = (
        "WHERE time >= ? AND time < ?",
        (
            -np.inf if since is None else since,
            np.inf if until is None else until,
        ),
    )
    with _open(path) as connection:
        try:
            frames = {
                name: pd.read_sql_query(f"SELECT * FROM {name} {where}", connection, params=arguments)
                for name in ("predictions", "refusals", "heartbeats")
            }
            # Labels arrive after their predictions, often after the range ends: matched by request id, not time.
            frames["feedback"] = pd.read_sql_query("SELECT * FROM feedback", connection)
            frames["samples"] = pd.read_sql_query(
                "SELECT s.* FROM samples s JOIN predictions p ON p.id = s.prediction_id "
                + where.replace("time", "p.time"),
                connection,
                params=arguments,
            )
        except (sqlite3.DatabaseError, pd.errors.DatabaseError) as error:
            raise LogError(f"prediction log {path} cannot be read ({error}); it may be truncated or corrupt") from error
    return frames


@contextlib.contextmanager
def _open(path: Path) -> Iterator[sqlite3.Connection]:
    """A log of this layout, read-only (`read_only`): nothing about it changes, and a server may go on writing it."""
    with read_only(path) as connection:
        try:
            layout = connection.execute("PRAGMA user_version").fetchone()[0]
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.DatabaseError as error:
            raise LogError(
                f"{path} is not a readable SQLite prediction log ({error}): it may be truncated or corrupt, or "
                "another kind of file; pass the file the server writes"
            ) from error
        if not tables:
            raise LogError(f"{path} is empty (no tables): pass the file the server writes (--prediction_log of serve)")
        if layout != LAYOUT or not set(TABLES) <= tables:
            raise LogError(
                f"{path} is a prediction log of another layout (version {layout}, tables {sorted(tables)}); "
                f"monitor reads layout {LAYOUT}, written by this version's server: "
                "serve again with a new --prediction_log"
            )
        yield connection
