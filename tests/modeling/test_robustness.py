"""The corruption suite every deployable is measured under: fixed corrupted images (so variants compare sample
for sample), five levels per kind in `full`, the default level in `fast`, nothing in `off`; and the metrics a
variant logs from it, with a drop only against a baseline measured in the same mode."""

from __future__ import annotations

import numpy as np
import pytest

from steps import contract
from steps.core.stats import accuracy
from steps.datasets.corruptions import LEVELS
from steps.datasets.data import load_dataset
from steps.modeling.measure import Baseline, DeployableMeasurement, variant_metrics
from steps.modeling.robustness import corrupted, levels_of, measure_robustness


@pytest.fixture(scope="module")
def digits_and_centroids():
    """A nearest-centroid classifier on digits: numpy only, good when clean, hurt by corruptions."""
    data = load_dataset("digits")
    centroids = np.stack([data.x_train[data.y_train == k].mean(axis=0) for k in range(10)])

    def predict_proba(x):
        distances = ((x[:, None] - centroids[None]) ** 2).sum(axis=(2, 3, 4))
        scores = np.exp(-(distances - distances.min(axis=1, keepdims=True)))
        return scores / scores.sum(axis=1, keepdims=True)

    return data, predict_proba


def test_the_modes_measure_five_levels_the_default_level_or_nothing():
    full, fast = levels_of("full"), levels_of("fast")
    assert list(full) == list(fast) == list(contract.ROBUSTNESS_KINDS)
    assert all(full[kind] == LEVELS[kind] and fast[kind] == (LEVELS[kind][2],) for kind in full)
    assert levels_of("off") == {}
    with pytest.raises(ValueError, match="off, fast, full"):
        levels_of("some")


def test_every_call_corrupts_the_same_images_the_same_way(digits_and_centroids):
    data, _ = digits_and_centroids
    for kind in contract.ROBUSTNESS_KINDS:
        first = corrupted(data.x_test, data.y_test, kind, LEVELS[kind][2])
        assert np.array_equal(first, corrupted(data.x_test, data.y_test, kind, LEVELS[kind][2]))
        assert not np.array_equal(first, data.x_test)


def test_fast_is_full_at_the_default_level_and_harsher_levels_cost_more(digits_and_centroids):
    data, predict_proba = digits_and_centroids
    full = measure_robustness(predict_proba, data.x_test, data.y_test, "full")
    fast = measure_robustness(predict_proba, data.x_test, data.y_test, "fast")
    clean = float((predict_proba(data.x_test).argmax(axis=1) == data.y_test).mean())
    assert all(fast.accuracy[kind] == (full.accuracy[kind][2],) for kind in full.accuracy)
    assert full.mean == pytest.approx(np.mean([full.accuracy[k] for k in full.accuracy]))
    assert full.mean < clean
    for kind in ("rotate", "noise", "blur", "contrast"):
        assert full.accuracy[kind][0] > full.accuracy[kind][-1], kind
    assert measure_robustness(predict_proba, data.x_test, data.y_test, "off") is None


def test_a_model_that_ignores_its_input_is_as_accurate_corrupted_as_clean(digits_and_centroids):
    data, _ = digits_and_centroids
    always_zero = lambda x: np.eye(10)[np.zeros(len(x), int)]  # noqa: E731
    robustness = measure_robustness(always_zero, data.x_test, data.y_test, "fast")
    assert robustness.mean == pytest.approx((data.y_test == 0).mean())


def measurement(robustness) -> DeployableMeasurement:
    return DeployableMeasurement(
        accuracy(np.ones(10), np.ones(10)), 1.0, 100, 50, 40, 0.1, 0.2, 0.3, np.ones(10), robustness, robustness
    )


def test_a_variant_logs_its_robust_accuracies_and_a_drop_only_against_the_same_mode(digits_and_centroids):
    data, predict_proba = digits_and_centroids
    fast = measure_robustness(predict_proba, data.x_val, data.y_val, "fast")
    metrics = variant_metrics(measurement(fast), Baseline("", 1.0, 1.0, 100, "fast", 0.9, 0.95), sparsity=0, params=1)
    assert metrics[contract.ROBUST_ACCURACY] == metrics[contract.VAL_ROBUST_ACCURACY] == fast.mean
    assert metrics[contract.ROBUST_ACCURACY_DROP] == pytest.approx(0.9 - fast.mean)
    assert metrics[contract.VAL_ROBUST_ACCURACY_DROP] == pytest.approx(0.95 - fast.mean)
    for kind in contract.ROBUSTNESS_KINDS:
        assert metrics[contract.robust_accuracy_of(kind)] == fast.of_kind(kind)
    other_mode = variant_metrics(measurement(fast), Baseline("", 1, 1, 100, "full", 0.9, 0.95), sparsity=0, params=1)
    assert contract.ROBUST_ACCURACY in other_mode and contract.ROBUST_ACCURACY_DROP not in other_mode
    off = variant_metrics(measurement(None), Baseline("", 1, 1, 100), sparsity=0, params=1)
    assert not any("robust" in key for key in off)
