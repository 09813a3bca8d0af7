"""The corruptions drift (and robustness) are made of: each kind keeps shape, type and range, does what its
severity says, and refuses unknown kinds and impossible severities."""

from __future__ import annotations

import numpy as np
import pytest

from steps import contract
from steps.datasets.corruptions import DEFAULT_SEVERITY, LEVELS, SEVERITY_MEANING, apply_drift


@pytest.fixture(scope="module")
def digits_like():
    rng = np.random.default_rng(16)
    x = np.zeros((200, 8, 8, 1), np.float32)
    x[:, 2:6, 3:5] = rng.uniform(0.5, 1.0, (200, 4, 2, 1))  # a bright bar in the middle of a dark image
    return x, np.arange(200) % 10


def test_every_kind_has_a_default_severity_and_a_meaning():
    assert set(DEFAULT_SEVERITY) == set(SEVERITY_MEANING) == set(contract.DRIFTS)


def test_each_robustness_kind_has_five_rising_levels_the_third_its_default():
    assert set(LEVELS) == set(contract.ROBUSTNESS_KINDS) <= set(contract.DRIFTS)
    for kind, levels in LEVELS.items():
        assert len(levels) == 5 and list(levels) == sorted(set(levels)) and levels[2] == DEFAULT_SEVERITY[kind]


@pytest.mark.parametrize("kind", contract.DRIFTS)
def test_each_drift_keeps_shape_type_and_range(kind, digits_like):
    x, y = digits_like
    drifted_x, drifted_y = apply_drift(x, y, kind, None, np.random.default_rng(0))
    assert drifted_x.shape == x.shape and drifted_x.dtype == np.float32 and drifted_y.shape == y.shape
    assert drifted_x.min() >= 0 and drifted_x.max() <= 1
    assert (kind == "none") == np.array_equal(drifted_x, x)
    assert not np.shares_memory(drifted_x, x)


def test_each_drift_does_what_its_severity_says(digits_like):
    x, y = digits_like
    rng = np.random.default_rng(0)
    grey = np.full_like(x, 0.5)
    assert np.std(apply_drift(grey, y, "noise", 0.1, rng)[0] - grey) == pytest.approx(0.1, rel=0.02)
    assert np.array_equal(apply_drift(x, y, "invert", 1.0, rng)[0], 1 - x)
    assert apply_drift(x, y, "dim", 0.3, rng)[0] == pytest.approx(0.7 * x)
    shifted, _ = apply_drift(x, y, "shift", 0.125, rng)  # one pixel on 8x8
    moved = [np.abs(np.subtract(*_centre(a, b))).sum() for a, b in zip(x, shifted)]
    assert np.allclose(moved, 1.0)
    turned, _ = apply_drift(x, y, "rotate", 90.0, rng)
    for before, after in zip(x, turned):
        assert any(np.allclose(after[..., 0], np.rot90(before[..., 0], k), atol=1e-5) for k in (1, -1))
    flat = apply_drift(x, y, "contrast", 1.0, rng)[0]
    assert np.allclose(flat, x.mean(axis=(1, 2, 3), keepdims=True) * np.ones_like(x), atol=1e-6)
    assert apply_drift(x, y, "contrast", 0.5, rng)[0].std() == pytest.approx(0.5 * x.std(), rel=0.01)
    blurred = apply_drift(x, y, "blur", 0.1, rng)[0]
    assert blurred.mean() == pytest.approx(x.mean(), rel=0.02) and blurred.max() < x.max()


def test_scale_grows_or_shrinks_each_image_about_its_centre():
    rows, columns = np.indices((33, 33))
    blob = np.exp(-((rows - 16) ** 2 + (columns - 20) ** 2) / 8.0)  # four pixels right of the centre (16, 16)
    scaled, _ = apply_drift(np.tile(blob[..., None], (400, 1, 1, 1)), np.zeros(400), "scale", 0.5)
    offsets = np.array([_centre(image, image)[0][1] - 16 for image in scaled])
    grown = offsets > 4
    assert np.allclose(offsets[grown], 6.0, atol=0.05) and np.allclose(offsets[~grown], 8 / 3, atol=0.05)
    assert 150 < grown.sum() < 250  # growing or shrinking, drawn per image


@pytest.mark.parametrize("channels", [1, 3])
def test_jpeg_loses_more_the_lower_its_quality(channels):
    x = np.random.default_rng(1).uniform(0, 1, (20, 16, 16, channels)).astype(np.float32)
    y = np.zeros(20)
    error = [np.abs(apply_drift(x, y, "jpeg", s)[0] - x).mean() for s in (0, 20, 60)]
    assert error[0] < error[1] < error[2] and error[0] < 0.03


def test_a_label_shift_lets_a_few_classes_dominate(digits_like):
    x, y = digits_like
    big_x, big_y = np.repeat(x, 10, axis=0), np.repeat(y, 10)
    _, shifted = apply_drift(big_x, big_y, "label", 0.6, np.random.default_rng(0))
    shares = np.sort(np.bincount(shifted, minlength=10) / len(shifted))[::-1]
    assert shares[:3].sum() == pytest.approx(0.6 + 0.4 * 0.3, abs=0.03)  # the dominant three, from 30%


def test_unknown_kinds_and_impossible_severities_are_refused(digits_like):
    x, y = digits_like
    with pytest.raises(ValueError, match="noise, shift"):
        apply_drift(x, y, "fog", 1.0)
    with pytest.raises(ValueError, match="between 0 and 1"):
        apply_drift(x, y, "invert", 1.5)
    with pytest.raises(ValueError, match=">= 0"):
        apply_drift(x, y, "noise", -0.1)
    with pytest.raises(ValueError, match="between 0 and 99"):
        apply_drift(x, y, "jpeg", 100)


def _centre(a, b):
    grid = np.indices(a.shape[:2])
    return [(grid * image[..., 0]).sum(axis=(1, 2)) / image.sum() for image in (a, b)]
