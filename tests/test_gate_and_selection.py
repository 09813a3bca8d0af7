"""The pure decisions: which variant is best within the accuracy budget, and whether a challenger may replace
the champion. Every verdict carries its reason."""

from __future__ import annotations

import pytest

from steps import contract
from steps.gate import Thresholds, decide
from steps.pipeline import plan_for
from steps.selection import VariantRow, pareto_front, select_best


def row(variant: str, accuracy: float, drop: float, gzip_bytes: int, p50: float) -> VariantRow:
    metrics = {
        contract.ACCURACY: accuracy,
        contract.ACCURACY_DROP: drop,
        contract.SIZE_GZIP_BYTES: gzip_bytes,
        contract.LATENCY_P50_MS: p50,
    }
    return VariantRow(f"run-{variant}", "quantize", variant, metrics)


ROWS = [
    row("float32", 0.983, 0.0, 700_000, 0.08),
    row("int8", 0.983, 0.0, 185_000, 0.036),
    row("pruned-int8", 0.980, 0.003, 68_000, 0.040),
    row("tiny-but-bad", 0.95, 0.033, 20_000, 0.020),
    row("dynamic", 0.983, 0.0, 185_000, 0.025),
]


def test_best_by_size_is_the_smallest_within_the_budget():
    assert select_best(ROWS, max_accuracy_drop=0.005, objective="size").variant == "pruned-int8"


def test_best_by_latency_is_the_fastest_within_the_budget():
    assert select_best(ROWS, max_accuracy_drop=0.005, objective="latency").variant == "dynamic"


def test_a_tighter_budget_excludes_lossy_variants_and_ties_go_to_accuracy():
    assert select_best(ROWS, max_accuracy_drop=0.0, objective="size").variant in {"int8", "dynamic"}
    assert select_best(ROWS, max_accuracy_drop=0.05, objective="size").variant == "tiny-but-bad"


def test_no_variant_within_budget_selects_nothing():
    assert select_best([ROWS[3]], max_accuracy_drop=0.005) is None


def test_unknown_objective_is_rejected():
    with pytest.raises(ValueError, match="objective='speed' is not valid; use one of: size, latency"):
        select_best(ROWS, 0.005, objective="speed")


def test_pareto_front_keeps_only_undominated_variants_cheapest_first():
    front = [r.variant for r in pareto_front(ROWS, contract.SIZE_GZIP_BYTES)]
    assert front == ["tiny-but-bad", "pruned-int8", "int8"]


def test_gate_with_no_champion_only_checks_the_floor():
    assert decide(0.95, None, Thresholds(0.0, 0.9)).passed
    failed = decide(0.85, None, Thresholds(0.0, 0.9))
    assert not failed.passed and "accuracy" in failed.reason and "0.9" in failed.reason


def test_gate_refuses_a_challenger_below_the_champion_beyond_the_tolerance():
    verdict = decide(0.97, 0.98, Thresholds(min_accuracy_change=0.005, min_accuracy=0.9))
    assert not verdict.passed
    assert "accuracy_change_vs_champion" in verdict.reason and "champion accuracy 0.9800" in verdict.reason


def test_gate_accepts_equal_or_within_tolerance():
    assert decide(0.98, 0.98, Thresholds(0.0, 0.9)).passed
    assert decide(0.978, 0.983, Thresholds(0.005, 0.9)).passed  # exactly at the tolerance, despite float rounding


def test_gate_thresholds_must_make_sense():
    with pytest.raises(ValueError, match="min_accuracy_change is a tolerance"):
        Thresholds(-0.01, 0.9)
    with pytest.raises(ValueError, match=r"min_accuracy must be in \[0, 1\]"):
        Thresholds(0.0, 1.5)


def test_a_partial_plan_brings_the_steps_its_variants_derive_from():
    assert [step[0] for step in plan_for("pruned-clustered-qat-int8, int8")] == [
        "int8",
        "pruned",
        "pruned-clustered",
        "pruned-clustered-qat-int8",
    ]
    assert len(plan_for("all")) == 12
    with pytest.raises(ValueError, match="unknown \\['pruned90'\\]; use 'all' or some of: dynamic"):
        plan_for("pruned90")
