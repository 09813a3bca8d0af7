"""Which variant is best within the accuracy budget, read on the validation split; the Pareto front."""

from __future__ import annotations

import pytest

from steps import contract
from steps.core.selection import Budget, VariantRow, pareto_front, select_best, within_budget


def budget(max_accuracy_drop: float, max_robust_accuracy_drop: float = 0.02) -> Budget:
    return Budget(max_accuracy_drop, max_robust_accuracy_drop)


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
    assert select_best(ROWS, budget(0.005), objective="size").variant == "pruned-int8"


def test_best_by_latency_is_the_fastest_within_the_budget():
    assert select_best(ROWS, budget(0.005), objective="latency").variant == "dynamic"


def test_a_tighter_budget_excludes_lossy_variants_and_a_looser_one_admits_them():
    assert select_best(ROWS, budget(0.0), objective="size").variant in {"int8", "dynamic"}  # equal
    assert select_best(ROWS, budget(0.05), objective="size").variant == "tiny-but-bad"


def test_a_tie_on_size_goes_to_the_higher_validation_accuracy_in_any_order():
    tied = [row("one-sample-worse", 0.0035, 100_000, 0.03), row("lossless", 0.0, 100_000, 0.05)]
    assert select_best(tied, budget(0.005)).variant == "lossless"
    assert select_best(tied[::-1], budget(0.005)).variant == "lossless"


def test_a_drop_at_the_budget_is_within_it_despite_float_rounding_and_a_hair_more_is_not():
    assert 0.1 + 0.2 > 0.3 and within_budget(0.1 + 0.2, 0.3)
    assert not within_budget(0.3 + 1e-9, 0.3)


def test_the_choice_reads_the_validation_split_never_the_test_split():
    lucky_on_test = row("lucky", 0.02, 10_000, 0.01, test_accuracy=1.0)  # over budget on validation
    unlucky_on_test = row("unlucky", 0.0, 50_000, 0.01, test_accuracy=0.90)
    assert select_best([lucky_on_test, unlucky_on_test], budget(0.005)).variant == "unlucky"


def test_no_variant_within_budget_selects_nothing():
    assert select_best([ROWS[3]], budget(0.005)) is None


def test_unknown_objective_is_rejected():
    with pytest.raises(ValueError, match="objective='speed' is not valid; use one of: size, latency"):
        select_best(ROWS, budget(0.005), objective="speed")


def test_a_variant_that_loses_more_robust_accuracy_than_its_budget_is_not_chosen():
    fragile = row("fragile-but-small", 0.0, 10_000, 0.01)
    fragile.metrics[contract.VAL_ROBUST_ACCURACY_DROP] = 0.05
    sturdy = row("sturdy", 0.0, 50_000, 0.01)
    sturdy.metrics[contract.VAL_ROBUST_ACCURACY_DROP] = 0.01
    unmeasured = row("robustness-off", 0.0, 40_000, 0.01)  # robustness=off: no robust drop, not held to it
    assert select_best([fragile, sturdy], budget(0.005)).variant == "sturdy"
    assert select_best([fragile, sturdy], budget(0.005, 0.05)).variant == "fragile-but-small"
    assert select_best([fragile, sturdy, unmeasured], budget(0.005)).variant == "robustness-off"
    assert budget(0.005).exceeded(fragile.metrics) == ["val_robust_accuracy_drop +0.0500 > 0.02"]
    assert budget(0.0).exceeded(ROWS[3].metrics) == ["val_accuracy_drop +0.0330 > 0.0"]


def test_pareto_front_keeps_only_undominated_variants_cheapest_first():
    front = [r.variant for r in pareto_front(ROWS, contract.SIZE_GZIP_BYTES)]
    assert front == ["tiny-but-bad", "pruned-int8", "int8"]
