"""The measurements every variant reports: accuracy, size, gzip size, single-sample latency.

One helper for every stage, so a float32 baseline and an int8 variant are
measured the same way and the MLflow UI compares like with like.
"""

from __future__ import annotations

import gzip
import time
from dataclasses import dataclass

import numpy as np

from steps import contract
from steps.litert_runtime import LiteRTClassifier

LATENCY_WARMUP = 50  # first invocations allocate and fill caches: not what a server sees
LATENCY_RUNS = 500


@dataclass(frozen=True)
class DeployableMeasurement:
    accuracy: float
    size_bytes: int
    size_gzip_bytes: int
    latency_p50_ms: float
    latency_p95_ms: float
    latency_p99_ms: float
    predictions: np.ndarray  # predicted class per test sample, for agreement checks


def sizes(tflite: bytes) -> tuple[int, int]:
    """Bytes of the file and bytes after gzip -9 (what a compressed download costs)."""
    return len(tflite), len(gzip.compress(tflite, compresslevel=9, mtime=0))


def latency_percentiles_ms(call, warmup: int, runs: int) -> tuple[float, float, float]:
    """p50, p95, p99 in milliseconds of `call()`, after `warmup` untimed calls."""
    for _ in range(warmup):
        call()
    timings = np.empty(runs)
    for i in range(runs):
        start = time.perf_counter()
        call()
        timings[i] = time.perf_counter() - start
    p50, p95, p99 = np.percentile(timings * 1000.0, [50, 95, 99])
    return float(p50), float(p95), float(p99)


def single_sample_latency_ms(
    classifier: LiteRTClassifier, sample: np.ndarray, warmup: int = LATENCY_WARMUP, runs: int = LATENCY_RUNS
) -> tuple[float, float, float]:
    """p50, p95, p99 of predicting one sample, through the same path a server uses."""
    batch = sample[np.newaxis]
    return latency_percentiles_ms(lambda: classifier.predict_proba(batch), warmup, runs)


def measure_deployable(tflite: bytes, x_test: np.ndarray, y_test: np.ndarray) -> DeployableMeasurement:
    classifier = LiteRTClassifier(tflite)
    predictions = classifier.predict_proba(x_test).argmax(axis=1)
    size, gzip_size = sizes(tflite)
    p50, p95, p99 = single_sample_latency_ms(classifier, x_test[0])
    return DeployableMeasurement(
        accuracy=float((predictions == y_test).mean()),
        size_bytes=size,
        size_gzip_bytes=gzip_size,
        latency_p50_ms=p50,
        latency_p95_ms=p95,
        latency_p99_ms=p99,
        predictions=predictions,
    )


def variant_metrics(
    measured: DeployableMeasurement,
    *,
    baseline_accuracy: float,
    baseline_gzip_bytes: int,
    sparsity: float,
    params: int,
) -> dict[str, float]:
    """The metric set of DESIGN.md, keyed by the contract's names."""
    return {
        contract.ACCURACY: measured.accuracy,
        contract.ACCURACY_DROP: baseline_accuracy - measured.accuracy,
        contract.SIZE_BYTES: measured.size_bytes,
        contract.SIZE_GZIP_BYTES: measured.size_gzip_bytes,
        contract.COMPRESSION_RATIO: baseline_gzip_bytes / measured.size_gzip_bytes,
        contract.SPARSITY: sparsity,
        contract.LATENCY_P50_MS: measured.latency_p50_ms,
        contract.LATENCY_P95_MS: measured.latency_p95_ms,
        contract.LATENCY_P99_MS: measured.latency_p99_ms,
        contract.PARAMS: params,
    }
