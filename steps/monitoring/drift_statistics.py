"""The drift statistics: two-sample tests of a window against held-out behaviour, and the verdict over them.

Each test asks "could these come from the same distribution?": a chi-square test on predicted-class counts
(needs no labels), a KS test per class on the softmax outputs (Bonferroni over classes), and an MMD test on
downsampled images with a permutation p-value (one multivariate test, not one per pixel: 64 per-pixel tests at
1% would alarm in about half the windows). The verdict is Bonferroni over the tests that ran, so under no
drift the chance of an alarm is at most alpha. numpy and scipy only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.stats import chi2_contingency, ks_2samp

DEFAULT_ALPHA = 0.01  # family-wise false-alarm rate per window: Bonferroni gives each of three tests alpha / 3
PERMUTATIONS = 2000  # smallest MMD p-value 1/2001, well below alpha / 3 = 0.0033; 30-70 ms per window of 200
PIXEL_GRID = 8  # images are block-averaged to at most 8x8 per channel: 8x8 digits as they are, 28x28 to 8x8
VERDICT_RULE = (
    "drift when any test that ran has p < alpha / (number of tests run): Bonferroni over the predicted-class "
    "chi-square test, the per-class softmax KS tests (themselves Bonferroni over classes) and the pixel MMD test"
)


def verdict(p_values: Sequence[float | None], alpha: float) -> tuple[bool, float, list[bool]]:
    """Bonferroni over the tests that ran (None or NaN = not run): (drifted, threshold, which are below it)."""
    ran = [p for p in p_values if p is not None and not math.isnan(p)]
    threshold = alpha / max(len(ran), 1)
    below = [p is not None and not math.isnan(p) and p < threshold for p in p_values]
    return any(below), threshold, below


def class_test(reference_counts: np.ndarray, window_counts: np.ndarray) -> float:
    """Chi-square test of homogeneity of two count vectors over classes (classes absent from both dropped)."""
    table = np.stack([reference_counts, window_counts]).astype(np.float64)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 1.0  # one class, or an empty side: nothing to compare
    return float(chi2_contingency(table).pvalue)


def softmax_test(reference: np.ndarray, window: np.ndarray) -> tuple[float, np.ndarray]:
    """Two-sample KS test of each class's probability; (Bonferroni-adjusted smallest p, per-class p-values)."""
    per_class = np.atleast_1d(ks_2samp(reference, window, axis=0).pvalue).astype(np.float64)
    return float(min(1.0, per_class.min() * len(per_class))), per_class


def mmd_test(
    reference: np.ndarray, window: np.ndarray, bandwidth: float, rng: np.random.Generator, permutations=PERMUTATIONS
) -> tuple[float, float]:
    """(squared MMD, permutation p-value (1 + k) / (1 + permutations)) of two samples of row vectors.

    Every permutation is a random split of the pooled rows into groups of the original sizes; all of them are
    scored at once as quadratic forms of 0/1 membership vectors with one kernel matrix, so a window of 200
    against 288 reference images with 2000 permutations takes tens of milliseconds.
    """
    pooled = np.concatenate([reference, window]).astype(np.float32)  # pixels need no more; BLAS runs twice as fast
    n, m = len(reference), len(window)
    kernel = np.exp(_squared_distances(pooled, pooled) / np.float32(-2 * bandwidth**2))
    # Row 0 is the observed split; every other row puts the window's label on m random rows of the pool
    # (the m smallest of uniform keys; float64 keys, so ties that would enlarge a group are practically impossible).
    keys = rng.random((permutations, n + m))
    kth = np.partition(keys, m - 1, axis=1)[:, m - 1 : m]
    membership = np.concatenate([np.r_[np.zeros(n), np.ones(m)][None], keys <= kth]).astype(np.float32)
    row_sums = kernel.sum(axis=1, dtype=np.float64)
    everything = row_sums.sum()
    within_window = np.einsum("pi,pi->p", membership @ kernel, membership, dtype=np.float64)
    window_rows = membership.astype(np.float64) @ row_sums
    between = window_rows - within_window
    within_reference = everything - 2 * window_rows + within_window
    statistic = within_window / m**2 + within_reference / n**2 - 2 * between / (n * m)
    exceed = int(np.count_nonzero(statistic[1:] >= statistic[0]))
    return float(statistic[0]), (1 + exceed) / (1 + permutations)


def downsample(images: np.ndarray, grid: int = PIXEL_GRID) -> np.ndarray:
    """(n, H, W, C) -> (n, D): block averages on a grid of at most grid x grid per channel, flattened."""
    n, height, width, channels = images.shape
    rows, cols = _block_starts(height, grid), _block_starts(width, grid)
    summed = np.add.reduceat(np.add.reduceat(images, rows, axis=1), cols, axis=2)
    areas = np.diff(np.r_[rows, height])[:, None] * np.diff(np.r_[cols, width])[None, :]
    return (summed / areas[None, :, :, None]).reshape(n, -1).astype(np.float32)


def median_distance(rows: np.ndarray) -> float:
    """Median Euclidean distance between distinct rows (1.0 when they are all equal): the kernel bandwidth."""
    distances = np.sqrt(_squared_distances(rows, rows)[np.triu_indices(len(rows), k=1)])
    median = float(np.median(distances)) if distances.size else 0.0
    return median if median > 0 else 1.0


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.maximum(squared, 0.0)


def _block_starts(side: int, grid: int) -> np.ndarray:
    return np.floor(np.linspace(0, side, min(grid, side) + 1)[:-1]).astype(np.intp)
