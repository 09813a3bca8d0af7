"""Choosing among variants: the Pareto front and the best variant within the budget (validation accuracy and,
where measured, validation robust accuracy under the corruption suite, each at most so far below the float
baseline's).

Pure functions over variant rows (run id, variant name, metrics), so the
pipeline report, `register` and tests share one definition of "best". The
choice reads the validation split only; the test split is reported, never
used to choose, so the reported accuracy of the chosen variant is unbiased.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from steps import contract
from steps.parameters import require_choice

BUDGET_SLACK = 1e-12  # a drop exactly at the budget is within it, despite float rounding


def within_budget(drop: float, budget: float) -> bool:
    """The one definition of "within the accuracy budget", for main's selection, register and search alike."""
    return drop <= budget + BUDGET_SLACK


@dataclass(frozen=True)
class Budget:
    """How much a chosen variant may lose against the float baseline on the validation split: accuracy, and
    robust accuracy (a variant measured with robustness off has no robust drop and meets that part)."""

    max_accuracy_drop: float
    max_robust_accuracy_drop: float

    def admits(self, metrics: Mapping[str, float]) -> bool:
        return not self.exceeded(metrics)

    def exceeded(self, metrics: Mapping[str, float]) -> list[str]:
        """The budgets the metrics break, each as `metric drop > budget` (empty: within)."""
        broken = []
        for key, budget in (
            (contract.VAL_ACCURACY_DROP, self.max_accuracy_drop),
            (contract.VAL_ROBUST_ACCURACY_DROP, self.max_robust_accuracy_drop),
        ):
            if key in metrics and not within_budget(metrics[key], budget):
                broken.append(f"{key} {metrics[key]:+.4f} > {budget}")
        return broken

    def __str__(self) -> str:
        return f"max_accuracy_drop={self.max_accuracy_drop}, max_robust_accuracy_drop={self.max_robust_accuracy_drop}"


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


def select_best(rows: list[VariantRow], budget: Budget, objective: str = "size") -> VariantRow | None:
    """The lowest-cost row within the budget on the validation split (ties: higher validation accuracy)."""
    require_choice("objective", objective, tuple(contract.OBJECTIVES))
    within = [row for row in rows if budget.admits(row.metrics)]
    if not within:
        return None
    return min(within, key=lambda r: (r[contract.OBJECTIVES[objective]], -r[contract.VAL_ACCURACY]))
