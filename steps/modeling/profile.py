"""Latency, throughput and peak memory of loading and using a model through pyfunc, in a process of its own.

`evaluate` runs `python -m steps.modeling.profile <model_folder> <sample.npy>
<latency_runs> <batch_size> <threads>` so that only the model's own cost is measured
(its tensorflow, if it needs one), not the evaluating process's. Prints one
JSON line keyed by the contract's metric names.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import mlflow
import numpy as np

from steps import contract
from steps.core.timing import latency_percentiles_ms
from steps.modeling.litert_runtime import THREADS

WARMUP = 20  # untimed single-sample calls first
THROUGHPUT_SECONDS = 2.0  # batch predictions for at least this long (and at least MIN_BATCHES)
MIN_BATCHES = 5


def peak_rss_mb() -> float:
    """VmHWM, not getrusage: ru_maxrss survives fork+exec and would report the parent's (tensorflow's) peak."""
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(status["VmHWM"].split()[0]) / 1024


def profile(model_uri: str, x: np.ndarray, latency_runs: int, batch_size: int, threads: int = 1) -> dict[str, float]:
    """threads > 1 adds the p50 with LiteRT on that many threads (a LiteRT deployable only: a Keras model has
    TensorFlow's own thread pools)."""
    start = time.perf_counter()
    model = mlflow.pyfunc.load_model(model_uri)
    load_seconds = time.perf_counter() - start
    one = x[:1]
    p50, p95, p99 = latency_percentiles_ms(lambda: model.predict(one), WARMUP, latency_runs)
    threaded = {}
    if threads > 1 and is_litert(model_uri):
        many = mlflow.pyfunc.load_model(model_uri, model_config={THREADS: threads})
        threaded_p50 = latency_percentiles_ms(lambda: many.predict(one), WARMUP, latency_runs)[0]
        threaded = {contract.latency_p50_ms_threads(threads): threaded_p50}
    batch = np.resize(x, (batch_size, *x.shape[1:])).astype(np.float32)
    model.predict(batch)
    start, batches = time.perf_counter(), 0
    while time.perf_counter() - start < THROUGHPUT_SECONDS or batches < MIN_BATCHES:
        model.predict(batch)
        batches += 1
    return {
        contract.LOAD_SECONDS: load_seconds,
        contract.LATENCY_P50_MS: p50,
        contract.LATENCY_P95_MS: p95,
        contract.LATENCY_P99_MS: p99,
        contract.THROUGHPUT: batches * batch_size / (time.perf_counter() - start),
        contract.PEAK_RSS_MB: peak_rss_mb(),
        **threaded,
    }


def is_litert(model_folder: str) -> bool:
    return any(Path(model_folder).rglob("*.tflite"))


def main(argv: list[str]) -> None:
    if len(argv) != 5:
        sys.exit(
            "usage: python -m steps.modeling.profile <model_folder> <sample.npy> <latency_runs> <batch_size> <threads>"
        )
    model_folder, sample_path, runs, batch_size, threads = argv
    print(json.dumps(profile(model_folder, np.load(sample_path), int(runs), int(batch_size), int(threads))))


if __name__ == "__main__":
    main(sys.argv[1:])
