"""Each drift statistic on synthetic data where the answer is known: p-values spread evenly under no drift, tiny
under an obvious one; the Bonferroni verdict; downsampling; numpy and scipy only."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from scipy.stats import kstest, norm

from steps import contract
from steps.monitoring.drift_statistics import (
    DEFAULT_ALPHA,
    PERMUTATIONS,
    class_test,
    downsample,
    mmd_test,
    softmax_test,
    verdict,
)
from steps.monitoring.reference_profile import (
    make_reference,
    pixel_heatmap,
)
from tests.support.commands import run_command
from tests.support.drift_samples import LIVE


def test_class_test_p_values_are_spread_evenly_without_drift_and_tiny_with_it():
    rng = np.random.default_rng(2)
    prior = rng.dirichlet(np.full(10, 5.0))
    p = np.array([class_test(rng.multinomial(288, prior), rng.multinomial(LIVE, prior)) for _ in range(400)])
    assert 0.02 <= (p < 0.05).mean() <= 0.09
    assert (p < 0.01).mean() <= 0.025
    skewed = prior.copy()
    skewed[:3] += 0.3
    assert class_test(rng.multinomial(288, prior), rng.multinomial(LIVE, skewed / skewed.sum())) < 1e-6


def test_class_test_ignores_classes_nobody_predicted_and_needs_two_classes():
    assert class_test(np.array([10, 0, 10]), np.array([5, 0, 5])) == pytest.approx(1.0)
    assert class_test(np.array([10, 0]), np.array([5, 0])) == 1.0


def test_softmax_test_is_bonferroni_over_classes_of_per_class_ks_p_values():
    rng = np.random.default_rng(3)
    reference, window = rng.random((288, 10)), rng.random((LIVE, 10))
    window[:, 4] = window[:, 4] ** 3  # one class's probabilities drift lower
    adjusted, per_class = softmax_test(reference, window)
    assert per_class.shape == (10,) and per_class.argmin() == 4
    assert adjusted == pytest.approx(min(1.0, 10 * per_class.min()))
    assert adjusted < 0.01


def test_softmax_test_per_class_p_values_are_uniform_without_drift():
    rng = np.random.default_rng(4)
    first_class = np.array([softmax_test(rng.random((288, 3)), rng.random((LIVE, 3)))[1][0] for _ in range(400)])
    # (KS statistics take discrete values, so the p-values are a discrete uniform: compare shares, not shapes)
    assert 0.02 <= (first_class < 0.05).mean() <= 0.08
    assert (first_class < 0.01).mean() <= 0.025
    assert 0.4 <= (first_class < 0.5).mean() <= 0.6


def test_mmd_p_values_are_uniform_without_drift_and_at_their_floor_with_an_obvious_shift():
    rng = np.random.default_rng(5)
    permutations = 199
    p = [mmd_test(rng.normal(size=(60, 16)), rng.normal(size=(40, 16)), 4.0, rng, permutations)[1] for _ in range(300)]
    assert min(p) >= 1 / (1 + permutations)  # (1 + k) / (1 + N): never zero
    assert kstest(p, "uniform").pvalue > 0.01
    assert 0.01 <= np.mean(np.array(p) <= 0.05) <= 0.1
    mmd, floor = mmd_test(rng.normal(size=(60, 16)), rng.normal(1.0, 1, (40, 16)), 4.0, rng, permutations)
    assert floor == 1 / (1 + permutations) and mmd > 0


def test_the_mmd_permutation_floor_is_below_the_per_test_level():
    assert PERMUTATIONS == 2000  # README's N
    assert 1 / (1 + PERMUTATIONS) < DEFAULT_ALPHA / len(contract.DRIFT_STATISTICS) / 5


def test_bonferroni_over_the_tests_that_ran():
    assert verdict([0.004, 0.5, 0.5], 0.01) == (False, pytest.approx(0.01 / 3), [False, False, False])
    assert verdict([0.003, 0.5, 0.5], 0.01) == (True, pytest.approx(0.01 / 3), [True, False, False])
    assert verdict([0.004, 0.5, None], 0.01) == (True, pytest.approx(0.01 / 2), [True, False, False])
    assert verdict([0.5, 0.001, float("nan")], 0.01)[1] == pytest.approx(0.005)


def test_per_pixel_tests_at_1_percent_would_alarm_in_about_half_of_clean_windows():
    """Why per-pixel differences are only a heatmap: 64 independent pixels tested at 1% each alarm in
    1 - 0.99**64 = 47% of clean windows (correlated pixels, as digits' are, somewhat fewer)."""
    rng = np.random.default_rng(20)
    noise = rng.random((288 + 300 * LIVE, 8, 8, 1)).astype(np.float32)
    profile = make_reference(np.full((288, 2), 0.5), np.zeros(288, int), noise[:288])
    extreme = norm.ppf(1 - 0.01 / 2)
    windows = noise[288:].reshape(300, LIVE, 8, 8, 1)
    share = np.mean([(np.abs(pixel_heatmap(profile, window)) > extreme).any() for window in windows])
    assert 1 - 0.99**64 == pytest.approx(0.47, abs=0.005) and share == pytest.approx(0.47, abs=0.1)


def test_drift_and_shifts_need_numpy_scipy_and_pillow_only():
    """`monitor` and `simulate` run them in light processes: nothing beyond what numpy and scipy load themselves,
    and Pillow (the corruptions' JPEG round trip; the server decodes images with it too)."""
    probe = (
        "import sys, numpy, scipy.stats, scipy.ndimage; before = set(sys.modules); "
        "import steps.monitoring.reference_profile, steps.datasets.corruptions; "
        "print(sorted({m.split('.')[0] for m in set(sys.modules) - before} - set(sys.stdlib_module_names)))"
    )
    result = run_command([sys.executable, "-c", probe])
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "['PIL', 'steps']"


def test_downsampling_keeps_8x8_and_brings_larger_and_colour_images_to_the_same_grid():
    rng = np.random.default_rng(13)
    small = rng.random((5, 8, 8, 1)).astype(np.float32)
    assert np.array_equal(downsample(small), small.reshape(5, 64))
    large = rng.random((5, 28, 28, 1)).astype(np.float32)
    assert downsample(large).shape == (5, 64)
    colour = rng.random((5, 16, 16, 3)).astype(np.float32)
    assert downsample(colour).shape == (5, 192)
    assert downsample(colour).mean(axis=1) == pytest.approx(colour.mean(axis=(1, 2, 3)), abs=1e-6)
