"""The champion/challenger gate as a pure decision: numbers in, verdict with reasons out.

The thresholds are checked by `mlflow.validate_evaluation_results` with
`MetricThreshold`s. Its `min_absolute_change` can only demand an improvement,
while the gate allows a small tolerance below the champion, so the comparison
is expressed as a metric of its own: the challenger's accuracy minus the
champion's, on the same test data, which must stay above -tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlflow
from mlflow.models import EvaluationResult, MetricThreshold
from mlflow.models.evaluation.validation import ModelValidationFailedException

from steps import contract

ACCURACY_CHANGE = "accuracy_change_vs_champion"
FLOAT_SLACK = 1e-9  # 0.978 - 0.983 is -0.0050000000000000044 in floats: still within a 0.005 tolerance


@dataclass(frozen=True)
class Thresholds:
    min_accuracy_change: float  # how far below the champion's accuracy the challenger may be (>= 0)
    min_accuracy: float  # absolute floor

    def __post_init__(self):
        if self.min_accuracy_change < 0:
            raise ValueError(f"min_accuracy_change is a tolerance and must be >= 0, got {self.min_accuracy_change}")
        if not 0 <= self.min_accuracy <= 1:
            raise ValueError(f"min_accuracy must be in [0, 1], got {self.min_accuracy}")


@dataclass(frozen=True)
class Verdict:
    passed: bool
    reason: str
    challenger_accuracy: float
    champion_accuracy: float | None  # None: there was no champion


def decide(challenger_accuracy: float, champion_accuracy: float | None, thresholds: Thresholds) -> Verdict:
    """Promote the challenger? Always a verdict with its reason; with no champion only the floor applies."""
    metrics = {contract.ACCURACY: challenger_accuracy}
    checks = {contract.ACCURACY: MetricThreshold(threshold=float(thresholds.min_accuracy), greater_is_better=True)}
    if champion_accuracy is not None:
        metrics[ACCURACY_CHANGE] = challenger_accuracy - champion_accuracy
        checks[ACCURACY_CHANGE] = MetricThreshold(
            threshold=-float(thresholds.min_accuracy_change) - FLOAT_SLACK, greater_is_better=True
        )
    try:
        mlflow.validate_evaluation_results(checks, EvaluationResult(metrics=metrics, artifacts={}))
    except ModelValidationFailedException as failure:
        return Verdict(False, _reason(failure.message, champion_accuracy), challenger_accuracy, champion_accuracy)
    versus = "no champion yet" if champion_accuracy is None else f"champion {champion_accuracy:.4f}"
    reason = f"accuracy {challenger_accuracy:.4f} passes (floor {thresholds.min_accuracy}; {versus}"
    if champion_accuracy is not None:
        reason += f", tolerance {thresholds.min_accuracy_change}"
    return Verdict(True, reason + ")", challenger_accuracy, champion_accuracy)


def _reason(message: str, champion_accuracy: float | None) -> str:
    text = " ".join(message.split())
    if champion_accuracy is not None:
        text += f" (champion accuracy {champion_accuracy:.4f} on the same test data)"
    return text
