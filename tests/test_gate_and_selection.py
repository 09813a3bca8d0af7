"""The pure decisions: which variant is best within the accuracy budget (read on the validation split), and
whether a challenger may replace the champion (on the same test samples, with McNemar's p-value beside the
tolerance). Every verdict carries its status and reason."""

from __future__ import annotations

import re

import numpy as np
import pytest

from steps import contract
from steps.core.plan import COMPRESSION_PLAN, plan_for
from steps.core.selection import VariantRow, pareto_front, select_best, within_budget
from steps.core.stats import proportion
from steps.release.gate import decide, decide_update
from steps.settings import GateConfig


def row(variant: str, val_drop: float, gzip_bytes: int, p50: float, test_accuracy: float = 0.98) -> VariantRow:
    metrics = {
        contract.VAL_ACCURACY: 0.99 - val_drop,
        contract.VAL_ACCURACY_DROP: val_drop,
        contract.ACCURACY: test_accuracy,
        contract.ACCURACY_DROP: 0.0,
        contract.SIZE_GZIP_BYTES: gzip_bytes,
        contract.LATENCY_P50_MS: p50,
    }
    return VariantRow(f"run-{variant}", contract.QUANTIZE, variant, metrics)


ROWS = [
    row("float32", 0.0, 700_000, 0.08),
    row("int8", 0.0, 185_000, 0.036),
    row("pruned-int8", 0.003, 68_000, 0.040),
    row("tiny-but-bad", 0.033, 20_000, 0.020),
    row("dynamic", 0.0, 185_000, 0.025),
]


def test_best_by_size_is_the_smallest_within_the_budget():
    assert select_best(ROWS, max_accuracy_drop=0.005, objective="size").variant == "pruned-int8"


def test_best_by_latency_is_the_fastest_within_the_budget():
    assert select_best(ROWS, max_accuracy_drop=0.005, objective="latency").variant == "dynamic"


def test_a_tighter_budget_excludes_lossy_variants_and_a_looser_one_admits_them():
    assert select_best(ROWS, max_accuracy_drop=0.0, objective="size").variant in {"int8", "dynamic"}  # equal
    assert select_best(ROWS, max_accuracy_drop=0.05, objective="size").variant == "tiny-but-bad"


def test_a_tie_on_size_goes_to_the_higher_validation_accuracy_in_any_order():
    tied = [row("one-sample-worse", 0.0035, 100_000, 0.03), row("lossless", 0.0, 100_000, 0.05)]
    assert select_best(tied, max_accuracy_drop=0.005).variant == "lossless"
    assert select_best(tied[::-1], max_accuracy_drop=0.005).variant == "lossless"


def test_a_drop_at_the_budget_is_within_it_despite_float_rounding_and_a_hair_more_is_not():
    assert 0.1 + 0.2 > 0.3 and within_budget(0.1 + 0.2, 0.3)
    assert not within_budget(0.3 + 1e-9, 0.3)


def test_the_choice_reads_the_validation_split_never_the_test_split():
    lucky_on_test = row("lucky", 0.02, 10_000, 0.01, test_accuracy=1.0)  # over budget on validation
    unlucky_on_test = row("unlucky", 0.0, 50_000, 0.01, test_accuracy=0.90)
    assert select_best([lucky_on_test, unlucky_on_test], max_accuracy_drop=0.005).variant == "unlucky"


def test_no_variant_within_budget_selects_nothing():
    assert select_best([ROWS[3]], max_accuracy_drop=0.005) is None


def test_unknown_objective_is_rejected():
    with pytest.raises(ValueError, match="objective='speed' is not valid; use one of: size, latency"):
        select_best(ROWS, 0.005, objective="speed")


def test_pareto_front_keeps_only_undominated_variants_cheapest_first():
    front = [r.variant for r in pareto_front(ROWS, contract.SIZE_GZIP_BYTES)]
    assert front == ["tiny-but-bad", "pruned-int8", "int8"]


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


@pytest.mark.parametrize(
    "settings, message",
    [({"min_accuracy_change": -0.01}, "min_accuracy_change is a tolerance"), ({"min_accuracy": 1.5}, r"\[0, 1\]")],
)
def test_gate_thresholds_must_make_sense(settings, message):
    with pytest.raises(ValueError, match=message):
        GateConfig(**settings)


def test_the_compression_plan_is_named_records_whose_parents_come_first():
    keys = [planned.key for planned in COMPRESSION_PLAN]
    assert len(keys) == len(set(keys)) == 12
    for index, planned in enumerate(COMPRESSION_PLAN):
        assert planned.entry_point in contract.COMPRESSION_STEPS
        assert planned.parent == contract.TRAIN or planned.parent in keys[:index]


def test_a_partial_plan_brings_the_steps_its_variants_derive_from():
    assert [planned.key for planned in plan_for("pruned-clustered-qat-int8, int8")] == [
        "int8",
        "pruned",
        "pruned-clustered",
        "pruned-clustered-qat-int8",
    ]
    assert len(plan_for("all")) == 12
    with pytest.raises(ValueError, match="unknown \\['pruned90'\\]; use 'all' or some of: dynamic"):
        plan_for("pruned90")


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
        contract.CHALLENGER_ACCURACY_OLD: old_right[0] / 360, contract.CHAMPION_ACCURACY_OLD: old_right[1] / 360,
        contract.CHALLENGER_ACCURACY_NEW: new_right[0] / 100, contract.CHAMPION_ACCURACY_NEW: new_right[1] / 100,
    }  # fmt: skip
    assert {name: accuracies[name] for name in expected} == expected
    for name, value in expected.items():  # each with its interval
        low, high = contract.interval_keys(name)
        assert accuracies[low] <= value <= accuracies[high] and accuracies[low] < accuracies[high]
