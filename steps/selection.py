"""Choosing among variants: the Pareto front and the best variant within an accuracy budget.

Pure functions over variant rows (run id, variant name, metrics), so the
pipeline report, `register` and tests share one definition of "best".
"""

from __future__ import annotations

from dataclasses import dataclass

from steps import contract

OBJECTIVES = {"size": contract.SIZE_GZIP_BYTES, "latency": contract.LATENCY_P50_MS}  # both: lower is better


@dataclass(frozen=True)
class VariantRow:
    run_id: str
    step: str
    variant: str
    metrics: dict[str, float]

    def __getitem__(self, key: str) -> float:
        return self.metrics[key]


def pareto_front(rows: list[VariantRow], cost: str) -> list[VariantRow]:
    """Rows no other row beats on both accuracy (higher) and `cost` (lower), sorted by cost."""
    front = []
    for row in sorted(rows, key=lambda r: (r[cost], -r[contract.ACCURACY])):
        if not front or row[contract.ACCURACY] > front[-1][contract.ACCURACY]:
            front.append(row)
    return front


def select_best(rows: list[VariantRow], max_accuracy_drop: float, objective: str = "size") -> VariantRow | None:
    """The lowest-cost row whose accuracy drop is within budget (ties: higher accuracy), or None."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective={objective!r} is not valid; use one of: {', '.join(OBJECTIVES)}")
    within = [row for row in rows if row[contract.ACCURACY_DROP] <= max_accuracy_drop + 1e-12]
    if not within:
        return None
    return min(within, key=lambda r: (r[OBJECTIVES[objective]], -r[contract.ACCURACY]))
