"""Reading a SQLite file without changing anything about it (the prediction logs, which servers may be writing)."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import urllib.parse
from collections.abc import Iterator

SIDE_FILES = ("-wal", "-shm")


@contextlib.contextmanager
def read_only(path: str | os.PathLike, timeout: float = 5.0) -> Iterator[sqlite3.Connection]:
    """A read-only connection; the WAL index files it had to make are removed again when it closes.

    Read-only, because a read-write connection to a WAL file left by a killed
    server would checkpoint it into the file on close, changing it. SQLite
    still makes -wal and -shm beside a WAL-mode file to read it: those that
    were not there before (and are empty) are not ours to leave. A running
    server's own are there before, and stay.
    """
    path = os.fspath(path)
    made = [path + suffix for suffix in SIDE_FILES if not os.path.exists(path + suffix)]
    uri = f"file:{urllib.parse.quote(os.path.abspath(path))}?mode=ro"
    connection = sqlite3.connect(uri, uri=True, timeout=timeout)
    try:
        yield connection
    finally:
        connection.close()
        for side_file in made:
            if os.path.exists(side_file) and not (side_file.endswith("-wal") and os.path.getsize(side_file)):
                os.remove(side_file)
