"""Explanations without tensorflow: which pixels a classifier's answer rests on, by occlusion.

`occlusion_map(predict_proba, image)` slides a grey square over the image and records how much the predicted
class's probability falls where it covers: every occluded copy goes through the model in batches (a LiteRT
interpreter runs them as one batch), so it works on any deployable, compressed or not, and on anything
else that maps images to probabilities. Each pixel's saliency is the mean fall over the squares covering
it; positive means "this region supports the answer". numpy only: the server imports it.

The square is a fixed share of the side (so 8x8 digits and 96x96 photos get maps of comparable
resolution) and is filled with the image's own mean: black would be a strong feature of its own on digits,
whose background is black.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

PATCH_SHARE = 0.25  # the occluding square's side, as a share of the image's side
STRIDE_SHARE = 0.125  # how far it moves each step
MAX_BATCH = 256  # occluded copies per call of the model


@dataclass(frozen=True)
class Explanation:
    target: int  # the class explained (the predicted one unless asked for another)
    probabilities: np.ndarray  # the model's answer on the image itself
    saliency: np.ndarray  # (H, W, C), the image's shape: the same value on every channel of a pixel


def occlusion_geometry(height: int, width: int) -> tuple[int, list[tuple[int, int]]]:
    """Patch side and the top-left corners of every patch position, a stride apart (the last row and column
    touch the far edge, so every pixel is covered)."""
    side = min(height, width)
    patch = max(1, round(PATCH_SHARE * side))
    stride = max(1, round(STRIDE_SHARE * side))
    rows = sorted({*range(0, height - patch + 1, stride), height - patch})
    columns = sorted({*range(0, width - patch + 1, stride), width - patch})
    return patch, [(r, c) for r in rows for c in columns]


def occlusion_map(
    predict_proba: Callable[[np.ndarray], np.ndarray], image: np.ndarray, target: int | None = None
) -> Explanation:
    """Occlusion saliency of one image shaped (H, W, C) for `target` (default: the predicted class)."""
    image = np.asarray(image, np.float32)
    if image.ndim != 3:
        raise ValueError(f"an image is shaped (height, width, channels); got {image.shape}")
    height, width = image.shape[:2]
    probabilities = np.asarray(predict_proba(image[np.newaxis]))[0]
    target = int(probabilities.argmax()) if target is None else int(target)
    patch, corners = occlusion_geometry(height, width)
    fill = image.mean(axis=(0, 1))  # per channel
    falls = np.empty(len(corners), np.float32)
    for start in range(0, len(corners), MAX_BATCH):
        chunk = corners[start : start + MAX_BATCH]
        occluded = np.repeat(image[np.newaxis], len(chunk), axis=0)
        for i, (r, c) in enumerate(chunk):
            occluded[i, r : r + patch, c : c + patch] = fill
        falls[start : start + len(chunk)] = probabilities[target] - np.asarray(predict_proba(occluded))[:, target]
    total = np.zeros((height, width), np.float32)
    covered = np.zeros((height, width), np.float32)
    for fall, (r, c) in zip(falls, corners):
        total[r : r + patch, c : c + patch] += fall
        covered[r : r + patch, c : c + patch] += 1
    saliency = np.repeat((total / covered)[..., np.newaxis], image.shape[2], axis=2)
    return Explanation(target, probabilities, saliency)


def occlude_share(image: np.ndarray, ranking: np.ndarray, share: float) -> np.ndarray:
    """A copy of `image` with the top `share` of its pixels by `ranking` (H, W) set to the image's mean: the
    deletion test's step."""
    height, width = image.shape[:2]
    count = max(1, round(share * height * width))
    chosen = np.unravel_index(np.argsort(ranking, axis=None)[::-1][:count], (height, width))
    occluded = np.array(image, np.float32, copy=True)
    occluded[chosen] = image.mean(axis=(0, 1))
    return occluded
