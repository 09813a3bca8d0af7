"""Corruptions: what `simulate` does to held-out traffic (so that monitoring can be shown to notice), and what
every variant's robustness is measured under (steps/modeling/robustness.py). One module for both.

`apply_drift(x, y, kind, severity, rng)` takes float32 images in [0, 1] shaped
(n, H, W, C) and their labels and returns a drifted copy of both, clipped to
[0, 1]. What `severity` means depends on the kind (SEVERITY_MEANING); sizes
are fractions of the image side, so one severity does about the same to 8x8
digits and to 28x28 or RGB images. Each robustness kind has five LEVELS in its
own unit, mildest first; the third is its DEFAULT_SEVERITY. On 8x8 digits a
shift is whole pixels (levels 1-3 are all one pixel) and `jpeg` touches a
single 8x8 DCT block. numpy, scipy and Pillow only: no tensorflow.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from scipy import ndimage

from steps.contract import DRIFTS

LABEL_DOMINANT_CLASSES = 3  # "a few classes dominate" (fewer when the data has fewer classes)
SEVERITY_MEANING = {
    "none": "ignored: the traffic is left as it is",
    "noise": "standard deviation of Gaussian noise added to every pixel (pixels span 0..1)",
    "shift": "translation as a fraction of the image side (whole pixels, at least one); "
    "each image moves left, right, up or down, drawn per image; uncovered pixels are 0",
    "rotate": "angle in degrees; each image turns by +angle or -angle (drawn per image) about its centre",
    "invert": "share of images replaced by their negative 1 - x, drawn per image",
    "dim": "share of brightness taken away: x * (1 - severity)",
    "label": f"share of samples redrawn from {LABEL_DOMINANT_CLASSES} dominant classes (drawn by rng); "
    "the rest keep the input's class mix; images are resampled with replacement",
    "scale": "relative change of size about the centre: each image grows by 1 + severity or shrinks by "
    "1 / (1 + severity), drawn per image; uncovered pixels are 0",
    "blur": "standard deviation of a Gaussian blur as a fraction of the image side",
    "contrast": "share of contrast taken away: each image moves towards its own mean, m + (x - m) * (1 - severity)",
    "jpeg": "JPEG quality taken away: each image is saved as a JPEG at quality 100 - severity and decoded",
}
# Defaults are what the detection test checks (every one of 7 disjoint windows of 50 flagged): clearly visible changes
# that also cost a digits model accuracy, not the smallest change a window of 200 can reveal.
DEFAULT_SEVERITY = {
    "none": 0.0,
    "noise": 0.3,
    "shift": 0.125,  # one pixel on 8x8 digits, 4 on 28x28
    "rotate": 20.0,
    "invert": 0.3,
    "dim": 0.3,
    "label": 0.5,
    "scale": 0.2,
    "blur": 0.07,  # about half a pixel on 8x8 digits, 7 px at 96
    "contrast": 0.6,
    "jpeg": 42.0,  # quality 58
}
UNIT_RANGE = ("invert", "dim", "label", "contrast")  # severities that are shares, so at most 1
MAX_JPEG_SEVERITY = 99  # quality 1, Pillow's lowest
# Five severities per robustness kind, mildest first; the third is the default. Chosen to run from barely
# visible to clearly damaging, in the spirit of CIFAR-10-C's five levels (blur, contrast and JPEG follow its
# progressions; CIFAR's JPEG qualities are 80, 65, 58, 50 and 40).
LEVELS = {
    "shift": (0.0625, 0.09, 0.125, 0.1875, 0.25),
    "rotate": (5.0, 10.0, 20.0, 30.0, 40.0),
    "noise": (0.1, 0.2, 0.3, 0.4, 0.5),
    "dim": (0.1, 0.2, 0.3, 0.45, 0.6),
    "scale": (0.05, 0.1, 0.2, 0.3, 0.4),
    "blur": (0.03, 0.05, 0.07, 0.09, 0.12),
    "contrast": (0.25, 0.5, 0.6, 0.7, 0.85),
    "jpeg": (20.0, 35.0, 42.0, 50.0, 60.0),
}


def apply_drift(
    x: np.ndarray, y: np.ndarray, kind: str, severity: float | None = None, rng: np.random.Generator | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A drifted copy of (x, y): same length, images clipped to [0, 1]; severity None means DEFAULT_SEVERITY."""
    if kind not in DRIFTS:
        raise ValueError(f"unknown drift {kind!r}; use one of {', '.join(DRIFTS)}")
    severity = DEFAULT_SEVERITY[kind] if severity is None else float(severity)
    ceiling = 1 if kind in UNIT_RANGE else MAX_JPEG_SEVERITY if kind == "jpeg" else np.inf
    if not np.isfinite(severity) or not 0 <= severity <= ceiling:
        bound = ">= 0" if ceiling == np.inf else f"between 0 and {ceiling}"
        raise ValueError(f"severity of {kind!r} must be {bound} ({SEVERITY_MEANING[kind]}); got {severity}")
    x = np.asarray(x, np.float32)
    y = np.asarray(y)
    if x.ndim != 4 or len(x) != len(y):
        raise ValueError(f"images must be shaped (n, H, W, C) with one label each; got {x.shape} and {len(y)} labels")
    rng = np.random.default_rng() if rng is None else rng
    if kind == "none" or severity == 0 or len(x) == 0:
        return x.copy(), y.copy()
    if kind == "label":
        return _prior_shift(x, y, severity, rng)
    drifted = {
        "noise": _noise,
        "shift": _shift,
        "rotate": _rotate,
        "invert": _invert,
        "dim": _dim,
        "scale": _scale,
        "blur": _blur,
        "contrast": _contrast,
        "jpeg": _jpeg,
    }[kind]
    return np.clip(drifted(x, severity, rng), 0.0, 1.0).astype(np.float32), y.copy()


def _noise(x, sigma, rng):
    return x + rng.normal(0.0, sigma, x.shape).astype(np.float32)


def _shift(x, fraction, rng):
    height, width = x.shape[1:3]
    dy, dx = max(1, round(fraction * height)), max(1, round(fraction * width))
    out = np.zeros_like(x)
    direction = rng.integers(4, size=len(x))
    moves = ((0, dx), (0, -dx), (dy, 0), (-dy, 0))  # right, left, down, up
    for d, (my, mx) in enumerate(moves):
        chosen = direction == d
        source = x[chosen]
        target = out[chosen]
        target[:, max(my, 0) : height + min(my, 0), max(mx, 0) : width + min(mx, 0)] = source[
            :, max(-my, 0) : height + min(-my, 0), max(-mx, 0) : width + min(-mx, 0)
        ]
        out[chosen] = target
    return out


def _rotate(x, angle, rng):
    out = np.empty_like(x)
    clockwise = rng.random(len(x)) < 0.5
    for sign, chosen in ((1, clockwise), (-1, ~clockwise)):
        if chosen.any():  # one call per sign: scipy turns a whole stack by one angle
            out[chosen] = ndimage.rotate(x[chosen], sign * angle, axes=(1, 2), reshape=False, order=1, cval=0.0)
    return out


def _invert(x, share, rng):
    chosen = rng.random(len(x)) < share
    out = x.copy()
    out[chosen] = 1.0 - out[chosen]
    return out


def _dim(x, share, rng):
    return x * np.float32(1.0 - share)


def _scale(x, change, rng):
    out = np.empty_like(x)
    grows = rng.random(len(x)) < 0.5
    centre = (np.array(x.shape[1:3]) - 1) / 2
    for factor, chosen in ((1 + change, grows), (1 / (1 + change), ~grows)):
        if chosen.any():  # output pixel p samples the input at centre + (p - centre) / factor
            matrix = np.diag([1.0, 1 / factor, 1 / factor, 1.0])
            offset = np.array([0.0, *(centre - centre / factor), 0.0])
            out[chosen] = ndimage.affine_transform(x[chosen], matrix, offset, order=1, cval=0.0)
    return out


def _blur(x, fraction, rng):
    height, width = x.shape[1:3]
    return ndimage.gaussian_filter(x, sigma=(0, fraction * height, fraction * width, 0), mode="nearest")


def _contrast(x, share, rng):
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    return mean + (x - mean) * np.float32(1.0 - share)


def _jpeg(x, quality_lost, rng):
    """Colour images as one RGB JPEG (chroma subsampled, as cameras save them); other images channel by channel."""
    quality = max(1, round(100 - quality_lost))
    pixels = np.round(x * 255).astype(np.uint8)
    planes = [pixels] if x.shape[-1] == 3 else [pixels[..., c] for c in range(x.shape[-1])]
    out = [np.stack([_jpeg_round_trip(image, quality) for image in plane]) for plane in planes]
    decoded = out[0] if x.shape[-1] == 3 else np.stack(out, axis=-1)
    return decoded.astype(np.float32) / 255


def _jpeg_round_trip(image: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(buffer))


def _prior_shift(x, y, share, rng):
    classes, counts = np.unique(y, return_counts=True)
    dominant = rng.choice(len(classes), size=min(LABEL_DOMINANT_CLASSES, max(1, len(classes) - 1)), replace=False)
    prior = (1 - share) * counts / counts.sum()
    prior[dominant] += share / len(dominant)
    # each sample's chance is its class's new prior shared among that class's samples
    weights = (prior / counts)[np.searchsorted(classes, y)]
    chosen = rng.choice(len(x), size=len(x), replace=True, p=weights / weights.sum())
    return x[chosen].copy(), y[chosen].copy()
