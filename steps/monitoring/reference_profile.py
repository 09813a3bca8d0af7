"""A deployable's reference profile: its behaviour on held-out data, which live windows are tested against.

Made from the deployable's outputs on the validation split (never trained on), with the images themselves.
Calibration measures the verdict's false-alarm rate instead of trusting it: held-out samples that did not
make the profile (the test split) are cut into disjoint clean windows per size (no sample in two windows of
one size), each goes through the same report, and their p-values are kept in the profile. Given the profile,
such windows are independent trials, so the count of alarms is binomial and its 95% Clopper-Pearson interval
holds (`rate_interval`); overlapping windows would print a narrower interval that is not true (in simulations
a Wilson interval over 100 overlapping draws of 200 from 360 samples held the true rate in 33-41% of pools).
The softmax of an int8 deployable takes at most 256 values: the ties make the KS tests conservative there.
Saved as reference.json (the scalars, for people) and reference.npz. numpy and scipy only.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from scipy.stats import binomtest

from steps.contract import DRIFT_P_CLASSES, DRIFT_P_PIXELS, DRIFT_P_SOFTMAX, DRIFT_STATISTICS
from steps.core.log_format import from_pixels, to_pixels
from steps.monitoring.drift_statistics import (
    DEFAULT_ALPHA,
    PERMUTATIONS,
    PIXEL_GRID,
    VERDICT_RULE,
    class_test,
    downsample,
    median_distance,
    mmd_test,
    softmax_test,
    verdict,
)

log = logging.getLogger(__name__)

MAX_REFERENCE_PIXELS = 500  # reference images kept for the pixel test (the kernel matrix grows with the square)
MAX_WINDOW_PIXELS = 500  # window images tested; a larger window is subsampled
MIN_PIXEL_IMAGES = 10  # fewer window images: the pixel test is not run
CALIBRATION_SIZES = (50, 100, 200, 500)  # window sizes whose false-alarm rate is measured (those the pool can fill)
CONFIDENCE = 0.95  # of the Clopper-Pearson interval of a rate over windows
SEED = 0  # permutations are seeded unless the caller passes a generator: the same window, the same report
FORMAT = 2  # of the saved profile; format 1 stored overlapping calibration windows, read as if independent
JSON_FILE = "reference.json"  # human-readable scalars
ARRAYS_FILE = "reference.npz"  # the samples the tests compare with


class ProfileError(ValueError):
    """A reference profile that cannot be read or does not fit the traffic; the message says what to do."""


@dataclass(frozen=True)
class FalseAlarms:
    """What clean held-out windows of one size measured: how often the verdict said drift."""

    window_size: int
    windows: int
    false_alarms: int
    alpha: float

    @property
    def rate(self) -> float:
        return self.false_alarms / self.windows

    @property
    def interval(self) -> tuple[float, float]:
        return rate_interval(self.false_alarms, self.windows)

    def __str__(self) -> str:
        low, high = self.interval
        return (
            f"{self.false_alarms} of {self.windows} disjoint clean windows of {self.window_size} at alpha "
            f"{self.alpha:g}: {self.rate:.1%} [{low:.1%}, {high:.1%}]"
        )


@dataclass(frozen=True, eq=False)
class ReferenceProfile:
    """A deployable's behaviour on held-out data, which live windows are tested against."""

    probabilities: np.ndarray  # (n, K) its softmax outputs on the held-out samples
    labels: np.ndarray  # (n,) their true classes
    image_mean: np.ndarray  # (n,) mean pixel of each image
    image_std: np.ndarray  # (n,)
    pixels: np.ndarray  # (m, D) downsampled images for the MMD test, m <= MAX_REFERENCE_PIXELS
    pixel_mean: np.ndarray  # (H, W) mean brightness per pixel (channels averaged), for the heatmap
    pixel_var: np.ndarray  # (H, W)
    image_shape: tuple[int, ...]  # (H, W, C) of the model's input
    bandwidth: float  # RBF kernel width of the MMD test: median distance between reference images
    class_names: tuple[str, ...]
    latency: dict[str, float] = field(default_factory=dict)  # as measured by the caller, e.g. latency_p99_ms
    source: str = ""  # which held-out data made it
    calibration: dict[int, np.ndarray] = field(default_factory=dict)  # window size -> (windows, 3) clean p-values
    calibration_source: str = ""  # which held-out data the clean windows came from
    calibration_pool: int = 0  # how many samples that data had: pool // size disjoint windows per size

    @property
    def n_classes(self) -> int:
        return self.probabilities.shape[1]

    @property
    def predicted(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)

    @property
    def class_counts(self) -> np.ndarray:
        return np.bincount(self.predicted, minlength=self.n_classes)

    @property
    def accuracy(self) -> float:
        return float((self.predicted == self.labels).mean())

    @property
    def per_class_recall(self) -> np.ndarray:
        """Share of each true class predicted right; NaN for a class absent from the held-out data."""
        truth = np.bincount(self.labels, minlength=self.n_classes)
        hits = np.bincount(self.labels[self.predicted == self.labels], minlength=self.n_classes)
        with np.errstate(invalid="ignore", divide="ignore"):
            return hits / truth

    def false_alarms(self, window: int, alpha: float = DEFAULT_ALPHA, pixels: bool = True) -> FalseAlarms | None:
        """The measured false alarms at the calibrated size nearest `window` (by ratio); None if not calibrated.

        pixels=False: as for windows without images, where only two tests run.
        """
        if not self.calibration:
            return None
        size = min(self.calibration, key=lambda s: abs(math.log(s / max(window, 1))))
        p_values = self.calibration[size]
        if not pixels:
            p_values = p_values[:, :2]
        alarms = sum(verdict(row, alpha)[0] for row in p_values)
        return FalseAlarms(size, len(p_values), int(alarms), alpha)

    def summary(self) -> dict:
        """The human-readable scalars (saved as reference.json)."""
        names = self.class_names
        return {
            "format": FORMAT,
            "source": self.source,
            "samples": int(len(self.labels)),
            "image_shape": list(self.image_shape),
            "class_names": list(names),
            "accuracy": self.accuracy,
            "per_class_recall": {n: _number(r) for n, r in zip(names, self.per_class_recall)},
            "predicted_class_counts": {n: int(c) for n, c in zip(names, self.class_counts)},
            "image_mean": float(self.image_mean.mean()),
            "image_std": float(self.image_std.mean()),
            "latency": dict(self.latency),
            "pixel_test": {
                "grid": PIXEL_GRID,
                "dimensions": int(self.pixels.shape[1]),
                "reference_images": int(len(self.pixels)),
                "bandwidth": self.bandwidth,
                "permutations": PERMUTATIONS,
            },
            "verdict_rule": VERDICT_RULE,
            "calibration": {
                "source": self.calibration_source,
                "pool": self.calibration_pool,
                "alpha": DEFAULT_ALPHA,
                "windows": "disjoint: no sample in two windows of one size",
                "confidence": CONFIDENCE,
                "false_alarms": {
                    str(size): {
                        "windows": a.windows,
                        "false_alarms": a.false_alarms,
                        "rate": a.rate,
                        "interval": list(a.interval),
                    }
                    for size in sorted(self.calibration)
                    if (a := self.false_alarms(size)) is not None
                },
            },
        }

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        arrays = {
            "probabilities": self.probabilities,
            "labels": self.labels,
            "image_mean": self.image_mean,
            "image_std": self.image_std,
            "pixels": self.pixels,
            "pixel_mean": self.pixel_mean,
            "pixel_var": self.pixel_var,
        }
        arrays.update({f"calibration_{size}": p for size, p in self.calibration.items()})
        np.savez_compressed(folder / ARRAYS_FILE, **arrays)
        (folder / JSON_FILE).write_text(json.dumps(self.summary(), indent=2) + "\n")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> "ReferenceProfile":
        folder = Path(folder)
        try:
            meta = json.loads((folder / JSON_FILE).read_text())
            with np.load(folder / ARRAYS_FILE, allow_pickle=False) as archive:
                arrays = {key: archive[key] for key in archive.files}
            if meta.get("format") != FORMAT:
                raise ProfileError(f"{folder / JSON_FILE} has format {meta.get('format')!r}; this code reads {FORMAT}")
            calibration = {int(k.split("_")[1]): v for k, v in arrays.items() if k.startswith("calibration_")}
            return cls(
                probabilities=arrays["probabilities"],
                labels=arrays["labels"],
                image_mean=arrays["image_mean"],
                image_std=arrays["image_std"],
                pixels=arrays["pixels"],
                pixel_mean=arrays["pixel_mean"],
                pixel_var=arrays["pixel_var"],
                image_shape=tuple(meta["image_shape"]),
                bandwidth=float(meta["pixel_test"]["bandwidth"]),
                class_names=tuple(meta["class_names"]),
                latency={k: float(v) for k, v in meta["latency"].items()},
                source=meta["source"],
                calibration=dict(sorted(calibration.items())),
                calibration_source=meta["calibration"]["source"],
                calibration_pool=int(meta["calibration"]["pool"]),
            )
        except ProfileError:
            raise
        except (OSError, ValueError, KeyError, TypeError) as error:  # missing, truncated or foreign files alike
            raise ProfileError(
                f"cannot read a reference profile in {folder} ({type(error).__name__}: {error}); it needs "
                f"{JSON_FILE} and {ARRAYS_FILE} as written by ReferenceProfile.save: make it again"
            ) from error


@dataclass(frozen=True, eq=False)
class DriftReport:
    """One window against the reference: a p-value per statistic, the verdict and what a figure needs."""

    p_values: dict[str, float | None]  # DRIFT_STATISTICS -> p-value (low = drifted); None = not run
    not_run: dict[str, str]  # statistic -> why it was not run
    alpha: float
    threshold: float  # alpha / tests run: what each p-value is compared with
    drifted: bool
    reasons: tuple[str, ...]  # the statistics below the threshold
    samples: int  # probabilities in the window
    images: int  # images the pixel test used
    class_counts: np.ndarray  # (K,) predicted classes in the window
    class_p_values: np.ndarray  # (K,) KS p-value per class, before Bonferroni
    mmd: float | None  # squared MMD of the window's images (biased estimate)
    heatmap: np.ndarray | None  # (H, W) Welch z of each pixel's mean brightness, window vs reference; never an alert
    false_alarms: FalseAlarms | None  # measured on clean windows of about this size at this alpha
    rule: str = VERDICT_RULE

    def metrics(self) -> dict[str, float]:
        """The p-values of the tests that ran, keyed by the contract's names (for mlflow.log_metrics)."""
        return {name: p for name, p in self.p_values.items() if p is not None}


def make_reference(
    probabilities: np.ndarray,
    labels: np.ndarray,
    images: np.ndarray,
    *,
    class_names: Sequence[str] | None = None,
    latency: dict[str, float] | None = None,
    source: str = "",
    rng: np.random.Generator | None = None,
) -> ReferenceProfile:
    """The profile of a deployable from its outputs on held-out samples, their labels and the images themselves."""
    probabilities = _as_probabilities(probabilities)
    labels = np.asarray(labels, np.int64).reshape(-1)
    images = _on_log_grid(images)
    if not len(probabilities) == len(labels) == len(images):
        raise ValueError(
            f"a reference needs one label and one image per output: {len(probabilities)} outputs, "
            f"{len(labels)} labels, {len(images)} images"
        )
    if len(labels) < 2:
        raise ValueError("a reference needs at least two held-out samples")
    n_classes = probabilities.shape[1]
    names = tuple(str(c) for c in range(n_classes)) if class_names is None else tuple(class_names)
    if len(names) != n_classes:
        raise ValueError(f"{len(names)} class names for {n_classes} model outputs")
    rng = np.random.default_rng(SEED) if rng is None else rng
    keep = np.sort(rng.choice(len(images), min(len(images), MAX_REFERENCE_PIXELS), replace=False))
    pixels = downsample(images[keep])
    brightness = images.mean(axis=-1)
    flat = images.reshape(len(images), -1)
    return ReferenceProfile(
        probabilities=probabilities,
        labels=labels,
        image_mean=flat.mean(axis=1),
        image_std=flat.std(axis=1),
        pixels=pixels,
        pixel_mean=brightness.mean(axis=0),
        pixel_var=brightness.var(axis=0, ddof=1),
        image_shape=tuple(int(d) for d in images.shape[1:]),
        bandwidth=median_distance(pixels),
        class_names=names,
        latency={k: float(v) for k, v in (latency or {}).items()},
        source=source,
    )


def drift_report(
    reference: ReferenceProfile,
    probabilities: np.ndarray,
    images: np.ndarray | None = None,
    alpha: float = DEFAULT_ALPHA,
    rng: np.random.Generator | None = None,
) -> DriftReport:
    """Test one window of live traffic against the reference.

    probabilities: (n, K) the served model's outputs for the window's samples.
    images: the inputs the server kept (any number, e.g. 1 in k by log_inputs), float in [0, 1] or uint8,
    shaped like the model's input; None or too few (< MIN_PIXEL_IMAGES): the pixel test is not run.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
    probabilities = _as_probabilities(probabilities)
    if probabilities.shape[1] != reference.n_classes:
        raise ProfileError(
            f"the window has {probabilities.shape[1]} classes but the reference {reference.n_classes}: "
            "compare traffic with the profile of the model version that served it"
        )
    if len(probabilities) == 0:
        raise ValueError("an empty window cannot be tested for drift")
    rng = np.random.default_rng(SEED) if rng is None else rng
    p_values: dict[str, float | None] = dict.fromkeys(DRIFT_STATISTICS)
    not_run: dict[str, str] = {}

    counts = np.bincount(probabilities.argmax(axis=1), minlength=reference.n_classes)
    p_values[DRIFT_P_CLASSES] = class_test(reference.class_counts, counts)
    p_values[DRIFT_P_SOFTMAX], class_p = softmax_test(reference.probabilities, probabilities)

    mmd, heatmap, used = None, None, 0
    images = None if images is None or len(images) == 0 else _on_log_grid(images, reference.image_shape)
    if images is None:
        not_run[DRIFT_P_PIXELS] = "no input images in the window (the server logged none)"
    elif len(images) < MIN_PIXEL_IMAGES:
        not_run[DRIFT_P_PIXELS] = f"{len(images)} input images in the window; the pixel test needs {MIN_PIXEL_IMAGES}"
    else:
        heatmap = pixel_heatmap(reference, images)
        if len(images) > MAX_WINDOW_PIXELS:
            images = images[np.sort(rng.choice(len(images), MAX_WINDOW_PIXELS, replace=False))]
        used = len(images)
        mmd, p_values[DRIFT_P_PIXELS] = mmd_test(reference.pixels, downsample(images), reference.bandwidth, rng)

    drifted, threshold, reasons = verdict([p_values[s] for s in DRIFT_STATISTICS], alpha)
    return DriftReport(
        p_values=p_values,
        not_run=not_run,
        alpha=alpha,
        threshold=threshold,
        drifted=drifted,
        reasons=tuple(s for s, below in zip(DRIFT_STATISTICS, reasons) if below),
        samples=len(probabilities),
        images=used,
        class_counts=counts,
        class_p_values=class_p,
        mmd=mmd,
        heatmap=heatmap,
        false_alarms=reference.false_alarms(len(probabilities), alpha, pixels=p_values[DRIFT_P_PIXELS] is not None),
    )


def calibrate(
    reference: ReferenceProfile,
    probabilities: np.ndarray,
    images: np.ndarray,
    *,
    window_sizes: Sequence[int] = CALIBRATION_SIZES,
    source: str = "",
    rng: np.random.Generator | None = None,
) -> ReferenceProfile:
    """The reference with the p-values of clean windows stored per size: its measured false-alarm rates.

    probabilities and images are the deployable's outputs on held-out samples that did NOT make the reference
    (on digits: the test split), one image per output. Per size they are cut into len // size disjoint windows
    (`disjoint_windows`), so the windows are independent trials; a size larger than the pool is skipped.
    """
    probabilities = _as_probabilities(probabilities)
    images = _on_log_grid(images, reference.image_shape)
    if len(images) != len(probabilities):
        raise ValueError(f"calibration needs one image per output: {len(probabilities)} outputs, {len(images)} images")
    rng = np.random.default_rng(SEED) if rng is None else rng
    calibration = {}
    for size in sorted(window_sizes):
        windows = disjoint_windows(len(probabilities), size, rng)
        if not len(windows):
            log.info("no calibration for windows of %d: the held-out pool has %d samples", size, len(probabilities))
            continue
        reports = [drift_report(reference, probabilities[chosen], images[chosen], rng=rng) for chosen in windows]
        calibration[size] = np.asarray([[r.p_values[s] for s in DRIFT_STATISTICS] for r in reports], np.float64)
    return replace(reference, calibration=calibration, calibration_source=source, calibration_pool=len(images))


def disjoint_windows(samples: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """(samples // size, size) indices: a random order of range(samples) cut into windows that share no sample.

    Windows that overlap are correlated: a rate counted over them looks more precise than it is. The remainder
    (samples % size) is left out.
    """
    if size < 1:
        raise ValueError(f"a window needs at least one sample, got size {size}")
    count = samples // size
    return rng.permutation(samples)[: count * size].reshape(count, size)


def rate_interval(flagged: int, windows: int) -> tuple[float, float]:
    """95% Clopper-Pearson interval of a rate of `flagged` in `windows` independent windows.

    Exact, so it holds at least 95% of the time for every true rate; Wilson's, narrower, falls to 84% for some
    rates at 7 windows (the digits test split's windows of 50).
    """
    interval = binomtest(flagged, windows).proportion_ci(confidence_level=CONFIDENCE, method="exact")
    return float(interval.low), float(interval.high)


def pixel_heatmap(reference: ReferenceProfile, images: np.ndarray) -> np.ndarray:
    """Welch z of each pixel's mean brightness, window minus reference: where the inputs changed (a figure only)."""
    brightness = images.mean(axis=-1)
    n = len(reference.image_mean)
    window_var = brightness.var(axis=0, ddof=1) if len(images) > 1 else np.zeros_like(reference.pixel_var)
    spread = np.sqrt(reference.pixel_var / n + window_var / len(images))
    difference = brightness.mean(axis=0) - reference.pixel_mean
    return np.divide(difference, spread, out=np.zeros_like(difference), where=spread > 0)


def _as_probabilities(probabilities) -> np.ndarray:
    probabilities = np.asarray(probabilities, np.float32)
    if probabilities.ndim != 2 or probabilities.shape[1] < 2:
        raise ValueError(f"probabilities must be shaped (samples, classes >= 2); got {probabilities.shape}")
    return probabilities


def _on_log_grid(images, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Float32 in [0, 1] on the prediction log's uint8 grid, so held-out and logged images compare alike."""
    images = np.asarray(images)
    if images.dtype == np.uint8:
        images = from_pixels(images)
    if shape is not None and images.ndim >= 2 and math.prod(images.shape[1:]) == math.prod(shape):
        images = images.reshape(len(images), *shape)  # flattened rows, or grey images without a channel axis
    if shape is not None and tuple(images.shape[1:]) != tuple(shape):
        raise ProfileError(f"window images are shaped {images.shape[1:]} but the reference's {tuple(shape)}")
    if images.ndim != 4:
        raise ValueError(f"images must be shaped (n, H, W, C); got {images.shape}")
    return from_pixels(to_pixels(images.astype(np.float32)))


def _number(value: float) -> float | None:
    return None if math.isnan(value) else float(value)
