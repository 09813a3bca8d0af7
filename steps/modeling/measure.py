"""The measurements every variant reports: accuracy (test, with its interval, and validation), size, latency.

One helper for every stage, so a float32 baseline and an int8 variant are
measured the same way and the MLflow UI compares like with like.
"""

from __future__ import annotations

import gzip
import lzma
from dataclasses import dataclass

import numpy as np

from steps import contract
from steps.core.stats import Accuracy, accuracy
from steps.core.timing import latency_percentiles_ms
from steps.datasets.data import Dataset
from steps.modeling.litert_runtime import LiteRTClassifier

LATENCY_WARMUP = 50  # first invocations allocate and fill caches: not what a server sees
LATENCY_RUNS = 500


@dataclass(frozen=True)
class DeployableMeasurement:
    accuracy: Accuracy  # on the test split: reported
    val_accuracy: float  # on the validation split: what variants are chosen by
    size_bytes: int
    size_gzip_bytes: int
    size_xz_bytes: int
    latency_p50_ms: float
    latency_p95_ms: float
    latency_p99_ms: float
    predictions: np.ndarray  # predicted class per test sample, for agreement checks


@dataclass(frozen=True)
class Baseline:
    """The float32 deployable a variant is compared with: what `accuracy_drop` and `compression_ratio` refer to."""

    run_id: str  # the train run ("" for a model file: then the parent itself is the baseline)
    accuracy: float  # test split
    val_accuracy: float  # validation split
    gzip_bytes: int

    @classmethod
    def of(cls, measured: DeployableMeasurement, run_id: str = "") -> "Baseline":
        return cls(run_id, measured.accuracy.value, measured.val_accuracy, measured.size_gzip_bytes)


def sizes(tflite: bytes) -> tuple[int, int]:
    """Bytes of the file and bytes after gzip -9 (what a compressed download costs)."""
    return len(tflite), len(gzip.compress(tflite, compresslevel=9, mtime=0))


def xz_bytes(tflite: bytes) -> int:
    """Bytes after xz -9e: LZMA's larger window and better model find repeats gzip's 32 KB window misses."""
    return len(lzma.compress(tflite, preset=9 | lzma.PRESET_EXTREME))


def single_sample_latency_ms(
    classifier: LiteRTClassifier, sample: np.ndarray, warmup: int = LATENCY_WARMUP, runs: int = LATENCY_RUNS
) -> tuple[float, float, float]:
    """p50, p95, p99 of predicting one sample, through the same path a server uses."""
    batch = sample[np.newaxis]
    return latency_percentiles_ms(lambda: classifier.predict_proba(batch), warmup, runs)


def measure_deployable(tflite: bytes, data: Dataset) -> DeployableMeasurement:
    classifier = LiteRTClassifier(tflite)
    predictions = classifier.predict_proba(data.x_test).argmax(axis=1)
    val_predictions = classifier.predict_proba(data.x_val).argmax(axis=1)
    size, gzip_size = sizes(tflite)
    p50, p95, p99 = single_sample_latency_ms(classifier, data.x_test[0])
    return DeployableMeasurement(
        accuracy=accuracy(predictions, data.y_test),
        val_accuracy=float((val_predictions == data.y_val).mean()),
        size_bytes=size,
        size_gzip_bytes=gzip_size,
        size_xz_bytes=xz_bytes(tflite),
        latency_p50_ms=p50,
        latency_p95_ms=p95,
        latency_p99_ms=p99,
        predictions=predictions,
    )


def variant_metrics(
    measured: DeployableMeasurement, baseline: Baseline, *, sparsity: float, params: int
) -> dict[str, float]:
    """The metric set of DESIGN.md, keyed by the contract's names."""
    return {
        contract.ACCURACY: measured.accuracy.value,
        contract.ACCURACY_LOW: measured.accuracy.low,
        contract.ACCURACY_HIGH: measured.accuracy.high,
        contract.ACCURACY_DROP: baseline.accuracy - measured.accuracy.value,
        contract.VAL_ACCURACY: measured.val_accuracy,
        contract.VAL_ACCURACY_DROP: baseline.val_accuracy - measured.val_accuracy,
        contract.SIZE_BYTES: measured.size_bytes,
        contract.SIZE_GZIP_BYTES: measured.size_gzip_bytes,
        contract.SIZE_XZ_BYTES: measured.size_xz_bytes,
        contract.COMPRESSION_RATIO: baseline.gzip_bytes / measured.size_gzip_bytes,
        contract.SPARSITY: sparsity,
        contract.LATENCY_P50_MS: measured.latency_p50_ms,
        contract.LATENCY_P95_MS: measured.latency_p95_ms,
        contract.LATENCY_P99_MS: measured.latency_p99_ms,
        contract.PARAMS: params,
    }
