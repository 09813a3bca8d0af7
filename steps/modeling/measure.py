"""The measurements every variant reports: accuracy (test, with its interval, and validation), size, latency,
and accuracy under the corruption suite (steps/modeling/robustness.py).

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
from steps.modeling.robustness import Robustness, measure_robustness

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
    robustness: Robustness | None = None  # test split; None when the mode is off
    val_robustness: Robustness | None = None  # validation split

    @property
    def robustness_mode(self) -> str:
        return self.robustness.mode if self.robustness else "off"


@dataclass(frozen=True)
class Baseline:
    """The float32 deployable a variant is compared with: what `accuracy_drop` and `compression_ratio` refer to."""

    run_id: str  # the train run ("" for a model file: then the parent itself is the baseline)
    accuracy: float  # test split
    val_accuracy: float  # validation split
    gzip_bytes: int
    robustness_mode: str = "off"  # the mode its robust accuracies were measured in ("off": none)
    robust_accuracy: float | None = None
    val_robust_accuracy: float | None = None

    @classmethod
    def of(cls, measured: DeployableMeasurement, run_id: str = "") -> "Baseline":
        robust = (measured.robustness.mean, measured.val_robustness.mean) if measured.robustness else (None, None)
        return cls(
            run_id,
            measured.accuracy.value,
            measured.val_accuracy,
            measured.size_gzip_bytes,
            measured.robustness_mode,
            *robust,
        )


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


def measure_deployable(tflite: bytes, data: Dataset, robustness: str) -> DeployableMeasurement:
    """Everything a variant reports; `robustness` is the corruption suite's mode (off, fast, full)."""
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
        robustness=measure_robustness(classifier.predict_proba, data.x_test, data.y_test, robustness),
        val_robustness=measure_robustness(classifier.predict_proba, data.x_val, data.y_val, robustness),
    )


def variant_metrics(
    measured: DeployableMeasurement, baseline: Baseline, *, sparsity: float, params: int
) -> dict[str, float]:
    """The metric set of DESIGN.md, keyed by the contract's names."""
    return {**core_metrics(measured, baseline, sparsity, params), **robustness_metrics(measured, baseline)}


def core_metrics(measured: DeployableMeasurement, baseline: Baseline, sparsity: float, params: int) -> dict:
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


def robustness_metrics(measured: DeployableMeasurement, baseline: Baseline) -> dict[str, float]:
    """robust_accuracy (test), val_robust_accuracy and one per kind; the drops only against a baseline measured
    in the same mode (a fast mean and a full one average different levels)."""
    test, val = measured.robustness, measured.val_robustness
    if test is None or val is None:
        return {}
    metrics = {contract.ROBUST_ACCURACY: test.mean, contract.VAL_ROBUST_ACCURACY: val.mean}
    metrics.update({contract.robust_accuracy_of(kind): test.of_kind(kind) for kind in test.accuracy})
    if baseline.robustness_mode == test.mode and baseline.robust_accuracy is not None:
        metrics[contract.ROBUST_ACCURACY_DROP] = baseline.robust_accuracy - test.mean
        metrics[contract.VAL_ROBUST_ACCURACY_DROP] = baseline.val_robust_accuracy - val.mean
    return metrics
