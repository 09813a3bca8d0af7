"""update's learning_rate=tune chooses on validation data: the best new validation accuracy among the candidates
that kept the old validation split (clean and corrupted) within budget; with none within budget, the one that
kept most, so the gate judges the least forgetful."""

from __future__ import annotations

import pytest

from steps.adapt.tuning import Candidate, Kept, choose

PARENT = Kept(accuracy=0.99, robust_accuracy=0.85)


def candidate(rate: float, new: float, old: float, robust: float | None = 0.85) -> Candidate:
    return Candidate(rate, 0.7, new, Kept(old, robust), epochs=10)


def test_the_best_new_accuracy_wins_among_the_candidates_within_the_old_budget():
    forgetful = candidate(0.003, new=0.97, old=0.96)  # learnt most, lost 3 points of the old
    careful = candidate(0.001, new=0.93, old=0.985)
    timid = candidate(0.0003, new=0.85, old=0.99)
    assert choose([forgetful, careful, timid], PARENT, max_old_drop=0.01, max_robust_drop=0.02) == (careful, True)


def test_a_candidate_that_loses_its_robustness_is_not_chosen():
    fragile = candidate(0.003, new=0.97, old=0.99, robust=0.80)  # 5 points of robust accuracy gone
    sturdy = candidate(0.001, new=0.93, old=0.985, robust=0.84)
    assert choose([fragile, sturdy], PARENT, max_old_drop=0.01, max_robust_drop=0.02) == (sturdy, True)
    assert choose([fragile, sturdy], PARENT, max_old_drop=0.01, max_robust_drop=0.06) == (fragile, True)


def test_without_robustness_figures_only_the_clean_budget_applies():
    parent = Kept(accuracy=0.99, robust_accuracy=None)  # robustness=off
    unmeasured = candidate(0.003, new=0.97, old=0.99, robust=None)
    assert choose([unmeasured], parent, max_old_drop=0.01, max_robust_drop=0.0) == (unmeasured, True)


def test_ties_on_new_accuracy_go_to_the_one_that_kept_more():
    first = candidate(0.001, new=0.93, old=0.982)
    second = candidate(0.003, new=0.93, old=0.99)
    assert choose([first, second], PARENT, max_old_drop=0.01, max_robust_drop=0.02)[0] is second


def test_with_none_within_budget_the_one_that_kept_most_goes_to_the_gate_flagged():
    worse = candidate(0.003, new=0.99, old=0.90)
    least_bad = candidate(0.001, new=0.95, old=0.95)
    assert choose([worse, least_bad], PARENT, max_old_drop=0.01, max_robust_drop=0.02) == (least_bad, False)


def test_a_candidate_reports_what_it_lost_against_the_float_parent():
    row = candidate(0.001, new=0.93, old=0.98, robust=0.84).as_dict(PARENT)
    assert row["old_val_accuracy_drop"] == pytest.approx(0.01)
    assert row["old_val_robust_accuracy_drop"] == pytest.approx(0.01)
    assert row["learning_rate"] == 0.001 and row["replay_fraction"] == 0.7
