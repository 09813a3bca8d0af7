"""The gate: whether a challenger may replace the champion, on the same test samples, with McNemar's p-value beside
the tolerance; an update's gate on old and new data. Every verdict carries its status and reason."""

from __future__ import annotations

import re

import numpy as np
import pytest

from steps import contract
from steps.core.stats import proportion
from steps.release.gate import decide, decide_update
from steps.settings import GateConfig


def correct(n_right: int, n: int = 360) -> np.ndarray:
    return np.arange(n) < n_right


def test_gate_with_no_champion_only_checks_the_floor():
    passed = decide(correct(342), None, GateConfig(min_accuracy=0.9))
    assert passed.status == contract.VALIDATION_PASSED and "no champion yet" in passed.reason
    assert passed.comparison is None
    assert set(passed.metrics) == {contract.CHALLENGER_ACCURACY, *contract.interval_keys(contract.CHALLENGER_ACCURACY)}
    failed = decide(correct(306), None, GateConfig(min_accuracy=0.9))
    assert failed.refused and "accuracy" in failed.reason and "0.9" in failed.reason


def test_gate_refuses_a_challenger_below_the_champion_beyond_the_tolerance():
    verdict = decide(correct(349), correct(353), GateConfig(min_accuracy_change=0.005))
    assert verdict.status == contract.VALIDATION_FAILED
    assert contract.ACCURACY_CHANGE in verdict.reason and "champion accuracy 0.9806" in verdict.reason
    assert verdict.metrics[contract.ACCURACY_CHANGE] == pytest.approx(-4 / 360)


def test_the_gate_records_each_accuracy_with_its_wilson_interval():
    metrics = decide(correct(349), correct(353), GateConfig()).metrics
    for name, right in ((contract.CHALLENGER_ACCURACY, 349), (contract.CHAMPION_ACCURACY, 353)):
        low, high = contract.interval_keys(name)
        assert metrics[name] == right / 360
        assert (metrics[low], metrics[high]) == (proportion(correct(right)).low, proportion(correct(right)).high)
        assert metrics[low] < metrics[name] < metrics[high]


def test_gate_accepts_equal_or_within_tolerance():
    assert decide(correct(353), correct(353), GateConfig()).status == contract.VALIDATION_PASSED
    # 0.978 vs 0.983 on 1000 samples: exactly at the 0.005 tolerance, despite float rounding
    assert not decide(correct(978, 1000), correct(983, 1000), GateConfig(min_accuracy_change=0.005)).refused


def test_the_gate_records_mcnemars_p_value_on_the_disagreeing_samples():
    champion = correct(350)
    challenger = champion.copy()
    challenger[[0, 1]] = False  # two samples the champion gets right, the challenger wrong
    challenger[[355, 356, 357]] = True  # three the other way round
    verdict = decide(challenger, champion, GateConfig())
    assert (verdict.comparison.only_first_right, verdict.comparison.only_second_right) == (3, 2)
    assert verdict.comparison.p_value == pytest.approx(1.0)  # 3 vs 2 disagreements: nothing to see
    assert verdict.metrics[contract.MCNEMAR_P_VALUE] == pytest.approx(1.0) and "McNemar" in verdict.reason


def test_a_one_sample_regression_is_refused_by_policy_though_it_is_no_evidence():
    champion = correct(353)
    challenger = correct(352)
    verdict = decide(challenger, champion, GateConfig(min_accuracy_change=0.0))
    assert verdict.refused and verdict.comparison.p_value == pytest.approx(1.0)


def test_a_challenger_much_less_robust_than_the_champion_is_refused_with_both_figures_in_the_reason():
    same = correct(353)
    fragile = (correct(7_000, 14_400), correct(7_600, 14_400))  # robust accuracy 0.486 against 0.528
    verdict = decide(same, same, GateConfig(min_robust_accuracy_change=0.02), robust_correct=fragile)
    assert verdict.refused and contract.ROBUST_ACCURACY_CHANGE in verdict.reason
    assert "robust accuracy 0.4861 against the champion's 0.5278" in verdict.reason
    assert verdict.metrics[contract.ROBUST_ACCURACY_CHANGE] == pytest.approx(-600 / 14_400)
    close = (correct(7_400, 14_400), correct(7_600, 14_400))  # 1.4 points less: within 0.02
    passed = decide(same, same, GateConfig(min_robust_accuracy_change=0.02), robust_correct=close)
    assert not passed.refused and "robust accuracy tolerance 0.02" in passed.reason
    assert decide(same, same, GateConfig()).metrics.keys().isdisjoint({contract.ROBUST_ACCURACY_CHANGE})


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"min_accuracy_change": -0.01}, "min_accuracy_change is a tolerance"),
        ({"min_accuracy": 1.5}, r"\[0, 1\]"),
        ({"min_robust_accuracy_change": -0.1}, r"min_robust_accuracy_change must be in \[0, 1\)"),
    ],
)
def test_gate_thresholds_must_make_sense(settings, message):
    with pytest.raises(ValueError, match=message):
        GateConfig(**settings)


def correctness(right: int, total: int) -> np.ndarray:
    return np.arange(total) < right


@pytest.mark.parametrize(
    "old_right, new_right, passes, words",
    [
        ((357, 360), (90, 60), True, "passes"),  # 3 of 360 fewer on the old split: within 0.01; better on new
        ((354, 360), (90, 60), False, "old test split: .*accuracy_change_vs_champion"),  # 6 fewer: past 0.01
        ((360, 360), (59, 60), False, "new held-out data: .*accuracy_change_vs_champion"),  # one fewer on new
    ],
    ids=["better-on-new-within-old-tolerance", "forgets-the-old-data", "worse-on-the-new-data"],
)
def test_an_update_must_hold_the_old_test_split_and_not_lose_on_the_new_data(old_right, new_right, passes, words):
    old = (correctness(old_right[0], 360), correctness(old_right[1], 360))
    new = (correctness(new_right[0], 100), correctness(new_right[1], 100))
    verdict, accuracies = decide_update(old, new, max_old_drop=0.01)
    assert verdict.refused is not passes
    assert re.search(words, verdict.reason)
    expected = {
        contract.CHALLENGER_ACCURACY_OLD: old_right[0] / 360,
        contract.CHAMPION_ACCURACY_OLD: old_right[1] / 360,
        contract.CHALLENGER_ACCURACY_NEW: new_right[0] / 100,
        contract.CHAMPION_ACCURACY_NEW: new_right[1] / 100,
    }
    assert {name: accuracies[name] for name in expected} == expected
    for name, value in expected.items():  # each with its interval
        low, high = contract.interval_keys(name)
        assert accuracies[low] <= value <= accuracies[high] and accuracies[low] < accuracies[high]
