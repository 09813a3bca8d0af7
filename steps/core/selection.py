"""Choosing among variants: the Pareto front and the best variant within an accuracy budget.

Pure functions over variant rows (run id, variant name, metrics), so the
pipeline report, `register` and tests share one definition of "best". The
choice reads the validation split only; the test split is reported, never
used to choose, so the reported accuracy of the chosen variant is unbiased.
"""

from __future__ import annotations

from dataclasses import dataclass

from steps import contract
from steps.parameters import require_choice

BUDGET_SLACK = 1e-12  # a drop exactly at the budget is within it, despite float rounding


def within_budget(drop: float, budget: float) -> bool:
    """The one definition of "within the accuracy budget", for main's selection, register and search alike."""
    return drop <= budget + BUDGET_SLACK


@dataclass(frozen=True)
class VariantRow:
    run_id: str
    step: str
    variant: str
    metrics: dict[str, float]

    def __getitem__(self, key: str) -> float:
        return self.metrics[key]


def pareto_front(rows: list[VariantRow], cost: str, accuracy: str = contract.VAL_ACCURACY) -> list[VariantRow]:
    """Rows no other row beats on both `accuracy` (higher) and `cost` (lower), sorted by cost."""
    front = []
    for row in sorted(rows, key=lambda r: (r[cost], -r[accuracy])):
        if not front or row[accuracy] > front[-1][accuracy]:
            front.append(row)
    return front


def select_best(rows: list[VariantRow], max_accuracy_drop: float, objective: str = "size") -> VariantRow | None:
    """The lowest-cost row whose validation accuracy drop is within budget (ties: higher validation accuracy)."""
    require_choice("objective", objective, tuple(contract.OBJECTIVES))
    within = [row for row in rows if within_budget(row[contract.VAL_ACCURACY_DROP], max_accuracy_drop)]
    if not within:
        return None
    return min(within, key=lambda r: (r[contract.OBJECTIVES[objective]], -r[contract.VAL_ACCURACY]))
