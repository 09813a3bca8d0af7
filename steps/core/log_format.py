"""The prediction log's on-disk format, written by the server and read by `monitor` and `update`: its layout
number, tables and columns, and the codecs of what the samples table keeps (probabilities, input pixels).

Layout 2 (`PRAGMA user_version`). A sample's probabilities are float32 little-endian, one per class; its
input, for a `log_inputs` share of requests, is round(clip(x, 0, 1) * 255) as uint8 pixels in a zlib stream,
shaped as `predictions.input_shape` ("8,8,1"): a quarter of float32's size before compression, within half a
grey level of what the model saw. numpy and the standard library only: the server imports this too.
"""

from __future__ import annotations

import functools
import zlib

import numpy as np

LAYOUT = 2
TABLES = {  # name -> column -> declaration; `monitor` and `update` read these names
    "predictions": {  # one row per prediction request
        "id": "INTEGER PRIMARY KEY",  # a row id of its own: a client's retry repeats its request id
        "request_id": "TEXT NOT NULL",
        "time": "REAL NOT NULL",  # unix seconds when the answer was ready
        "replica": "TEXT NOT NULL",  # host:port:pid of the server process
        "endpoint": "TEXT NOT NULL",  # invocations, predict
        "model_name": "TEXT NOT NULL",
        "model_version": "TEXT NOT NULL",
        "latency_ms": "REAL NOT NULL",  # body received -> model answer (decoding, queueing, invocation)
        "inference_ms": "REAL NOT NULL",  # the model invocation alone (of the batch it ran in)
        "n_samples": "INTEGER NOT NULL",
        "input_shape": "TEXT NOT NULL",  # the model's sample shape, e.g. "8,8,1"
        "input_mean": "REAL NOT NULL",  # over every pixel of the request's preprocessed input
        "input_std": "REAL NOT NULL",
        "predicted_label": "TEXT NOT NULL",  # comma-separated, one per sample
        "probability": "REAL NOT NULL",  # mean of the samples' top probabilities
    },
    "samples": {  # one row per sample of a prediction
        "prediction_id": "INTEGER NOT NULL",  # predictions.id
        "sample_index": "INTEGER NOT NULL",  # position in the request's batch
        "predicted_class": "INTEGER NOT NULL",
        "probabilities": "BLOB NOT NULL",  # float32 little-endian, one per class (the full softmax)
        "input": "BLOB",  # zlib-compressed uint8 pixels of the preprocessed input; NULL when log_inputs skipped it
    },
    "feedback": {
        "id": "INTEGER PRIMARY KEY",
        "request_id": "TEXT NOT NULL",
        "sample_index": "INTEGER NOT NULL DEFAULT 0",
        "time": "REAL NOT NULL",
        "true_label": "TEXT NOT NULL",
    },
    "refusals": {  # every 4xx/5xx answer
        "id": "INTEGER PRIMARY KEY",
        "time": "REAL NOT NULL",
        "replica": "TEXT NOT NULL",
        "endpoint": "TEXT NOT NULL",  # the route's name, or "other" for an unknown path
        "status": "INTEGER NOT NULL",
        "kind": "TEXT NOT NULL",  # the answer's error_code (BAD_REQUEST, UNAVAILABLE, ...)
        "request_id": "TEXT",
    },
    "heartbeats": {
        "id": "INTEGER PRIMARY KEY",
        "time": "REAL NOT NULL",
        "replica": "TEXT NOT NULL",
        "rss_bytes": "INTEGER NOT NULL",  # the server process's resident memory
        "model_name": "TEXT",  # NULL while no model is loaded
        "model_version": "TEXT",
        "queue_depth": "INTEGER NOT NULL",  # prediction requests in progress
        "requests_total": "INTEGER NOT NULL",  # requests answered since the server started, any endpoint and status
    },
}
TABLE_CONSTRAINTS = {"samples": ", PRIMARY KEY (prediction_id, sample_index)"}
SCHEMA = (
    "\n".join(
        f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(f'{name} {kind}' for name, kind in columns.items())}"
        f"{TABLE_CONSTRAINTS.get(table, '')});"
        for table, columns in TABLES.items()
    )
    + """
CREATE INDEX IF NOT EXISTS predictions_request ON predictions (request_id);
CREATE INDEX IF NOT EXISTS predictions_time ON predictions (time);
CREATE INDEX IF NOT EXISTS feedback_request ON feedback (request_id);
"""
)


def _insert(table: str, *left_out: str) -> str:
    """INSERT for a table's columns but those left out (a row id SQLite gives, a NULL)."""
    columns = [name for name in TABLES[table] if name not in left_out]
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


INSERT_PREDICTION = _insert("predictions")  # ids given in the flush, so samples can point at them
INSERT_SAMPLE = _insert("samples")
INSERT_SAMPLE_WITHOUT_INPUT = _insert("samples", "input")
INSERT_FEEDBACK = _insert("feedback", "id")
INSERT_REFUSAL = _insert("refusals", "id")
INSERT_HEARTBEAT = _insert("heartbeats", "id")


def encode_probabilities(vector: np.ndarray) -> bytearray:
    """One sample's probabilities as stored (a bytearray: sqlite3 binds it without looking for an adapter)."""
    return bytearray(vector.astype("<f4", copy=False))


def decode_probabilities(blobs) -> np.ndarray:
    """(samples, classes) float32 from the stored probability blobs."""
    blobs = list(blobs)
    if not blobs:
        return np.zeros((0, 0), np.float32)
    return np.stack([np.frombuffer(blob, dtype="<f4") for blob in blobs])


def to_pixels(x: np.ndarray) -> np.ndarray:
    """Float pixels in [0, 1] (clipped) to the log's uint8 grid."""
    pixels = x * np.float32(255)
    np.maximum(pixels, 0, out=pixels)  # not np.clip: its Python wrapper costs more than the clipping
    np.minimum(pixels, 255, out=pixels)
    np.rint(pixels, out=pixels)
    return pixels.astype(np.uint8)


def from_pixels(pixels: np.ndarray) -> np.ndarray:
    """The log's uint8 pixels back as float32 in [0, 1]."""
    return pixels.astype(np.float32) / np.float32(255)


def encode_inputs(batches: list[np.ndarray]) -> list[bytearray]:
    """Each sample of the batches as zlib-compressed uint8 pixels, round(clip(x, 0, 1) * 255): a quarter of
    float32's size before compression, within half a grey level of what the model saw."""
    flat = batches[0].ravel() if len(batches) == 1 else np.concatenate([batch.ravel() for batch in batches])
    pixels = to_pixels(flat)  # one pass for every sample, whatever their shapes (mid-swap, two models)
    encoded, start = [], 0
    for batch in batches:
        size = batch[0].size
        settings = deflate_settings(size)
        for _ in range(len(batch)):
            deflate = zlib.compressobj(*settings)
            encoded.append(bytearray(deflate.compress(pixels[start : start + size])) + deflate.flush())
            start += size
    return encoded


SMALLEST_DEFLATED = 256  # bytes: smaller inputs are stored in the zlib stream, not deflated
LARGEST_DEFLATED = 4096  # bytes: larger ones (photos) are stored too


@functools.cache
def deflate_settings(size: int) -> tuple[int, int, int, int]:
    """zlib.compressobj's level, method, window bits and memory level for inputs of `size` bytes.

    Any zlib reader decompresses the result. zlib's defaults (32 KB window,
    64 KB hash table cleared for every stream) cost a small image 110k
    instructions, more than the rest of its request's logging; sized to the
    input, 40k, most of it building Huffman trees. Below SMALLEST_DEFLATED
    bytes that buys nothing (the 64 pixels of an 8x8 digit deflate to 64
    bytes), so they are stored (level 0, 12k instructions). Above
    LARGEST_DEFLATED it costs more than it saves: a photo's sensor noise
    leaves deflate little to find (a 96x96x3 `shapes` image shrank 9% for
    0.39 ms, a 224x224x3 one 13% for 3.0 ms, most of a request's time beside
    a 0.4 ms model; stored, 0.012 and 0.061 ms; measured once on this machine).
    """
    bits = size.bit_length()
    level = 1 if SMALLEST_DEFLATED <= size <= LARGEST_DEFLATED else 0
    return level, zlib.DEFLATED, min(max(bits, 9), 15), min(max(bits - 7, 1), 8)


@functools.cache
def shape_text(sample_shape: tuple[int, ...]) -> str:
    return ",".join(map(str, sample_shape))


def decode_input(blob: bytes | None, shape: str) -> np.ndarray | None:
    """A logged input back as float32 pixels in [0, 1], shaped as the model's sample ("8,8,1"); None if not kept."""
    if blob is None:
        return None
    pixels = np.frombuffer(zlib.decompress(blob), dtype=np.uint8)
    return from_pixels(pixels).reshape(tuple(int(side) for side in shape.split(",")))
