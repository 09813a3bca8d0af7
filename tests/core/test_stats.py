"""What accuracies on small test sets can say: Wilson intervals and exact McNemar p-values, checked against
values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from steps.core.stats import accuracy, chance_level, mcnemar, no_better_than_chance, proportion


def wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The textbook formula, written out independently of scipy."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


@pytest.mark.parametrize("k, n", [(95, 100), (354, 360), (360, 360), (0, 20), (1, 3)])
def test_the_interval_is_wilsons(k, n):
    measured = proportion(np.arange(n) < k)
    assert (measured.correct, measured.total) == (k, n)
    assert (measured.low, measured.high) == pytest.approx(wilson(k, n), abs=1e-9)
    assert measured.low <= measured.value <= measured.high


def test_on_360_samples_one_sample_is_a_quarter_point_and_the_interval_spans_about_three():
    measured = accuracy(np.r_[np.zeros(354), np.ones(6)], np.zeros(360))
    assert measured.value == pytest.approx(354 / 360)
    assert 0.02 < measured.high - measured.low < 0.035


def test_mcnemar_counts_only_the_samples_where_the_models_disagree():
    first = np.array([True] * 10 + [False] * 2 + [True] * 50 + [False] * 5)
    second = np.array([False] * 10 + [True] * 2 + [True] * 50 + [False] * 5)
    comparison = mcnemar(first, second)
    assert (comparison.only_first_right, comparison.only_second_right) == (10, 2)
    assert comparison.p_value == pytest.approx(2 * (1 + 12 + 66) / 2**12)  # two-sided binomial, n=12, k<=2


def test_models_that_never_disagree_have_p_value_one():
    same = np.array([True, False, True])
    assert mcnemar(same, same).p_value == 1.0


def test_unpaired_samples_and_empty_sets_are_refused():
    with pytest.raises(ValueError, match="same samples"):
        mcnemar(np.ones(3, bool), np.ones(4, bool))
    with pytest.raises(ValueError, match="zero samples"):
        proportion(np.array([], bool))


def test_readme_worked_examples():
    """README "What the numbers can resolve": 98.6% on 360 is [96.8%, 99.4%]; one sample worse is p = 1; one-way
    disagreements reach p < 0.05 at 6 samples, not 5 (1.7 points on 360)."""
    example = proportion(np.arange(360) < 355)
    assert (round(example.value, 3), round(example.low, 3), round(example.high, 3)) == (0.986, 0.968, 0.994)
    one_worse = mcnemar(np.arange(360) < 354, np.arange(360) < 355)
    assert one_worse.p_value == 1.0
    one_way = {n: mcnemar(np.arange(360) >= n, np.ones(360, bool)).p_value for n in (5, 6)}
    assert one_way[5] > 0.05 > one_way[6]


def test_chance_is_the_better_of_guessing_and_always_answering_the_commonest_class():
    assert chance_level(np.array([0, 1, 2, 0, 1, 2]), 3) == pytest.approx(1 / 3)
    assert chance_level(np.array([0] * 8 + [1, 2]), 3) == pytest.approx(0.8)
    assert chance_level(np.array([0, 0, 1, 1]), 4) == pytest.approx(0.5)  # two of four classes present


def test_a_model_is_no_better_than_chance_only_when_even_the_top_of_its_interval_is_within_five_points():
    balanced = np.arange(400) % 10  # chance 0.10
    assert no_better_than_chance(proportion(np.arange(400) < 40), balanced, 10)  # 0.10 [0.074, 0.133]
    assert not no_better_than_chance(proportion(np.arange(400) < 60), balanced, 10)  # 0.15 [0.118, 0.188]
    # 3 of 12 is chance-level too, but 12 samples cannot show it: the guard stays quiet
    assert not no_better_than_chance(proportion(np.arange(12) < 3), np.arange(12) % 4, 4)
