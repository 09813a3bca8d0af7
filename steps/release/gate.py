"""The champion/challenger gate as a pure decision: per-sample correctness in, verdict with reasons out.

The thresholds are checked by `mlflow.validate_evaluation_results` with
`MetricThreshold`s. Its `min_absolute_change` can only demand an improvement,
while the gate allows a small tolerance below the champion, so the comparison
is expressed as a metric of its own: the challenger's accuracy minus the
champion's, on the same test samples, which must stay above -tolerance.

Beside the tolerance, an exact McNemar test on the same samples says whether
the difference is more than chance (its p-value is recorded, not a threshold):
on a few hundred samples a one-sample difference is a policy decision, not
evidence. README explains what the gate can resolve.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlflow
import numpy as np
from mlflow.models import EvaluationResult, MetricThreshold
from mlflow.models.evaluation.validation import ModelValidationFailedException

from steps import contract
from steps.core.stats import Accuracy, PairedComparison, mcnemar, proportion
from steps.settings import GateConfig

FLOAT_SLACK = 1e-9  # 0.978 - 0.983 is -0.0050000000000000044 in floats: still within a 0.005 tolerance


@dataclass(frozen=True)
class Verdict:
    """What the gate (or a forced promotion) decided about a version, and why. Recorded either way."""

    status: str  # one of contract.VALIDATION_STATUSES
    reason: str
    challenger: Accuracy | None = None  # None: the gate did not run (forced, unchanged)
    champion: Accuracy | None = None  # None: no champion to compare with
    comparison: PairedComparison | None = None
    robust: tuple[float, float] | None = None  # challenger's and champion's robust accuracy, when compared

    @property
    def refused(self) -> bool:
        return self.status == contract.VALIDATION_FAILED

    @property
    def metrics(self) -> dict[str, float]:
        """The numbers behind the verdict, under the contract's metric names (only those that exist)."""
        metrics = {}
        if self.challenger is not None:
            metrics |= accuracy_metrics(contract.CHALLENGER_ACCURACY, self.challenger)
        if self.champion is not None:
            metrics |= accuracy_metrics(contract.CHAMPION_ACCURACY, self.champion)
            metrics[contract.ACCURACY_CHANGE] = self.challenger.value - self.champion.value
        if self.comparison is not None:
            metrics[contract.MCNEMAR_P_VALUE] = self.comparison.p_value
        if self.robust is not None:
            metrics[contract.CHALLENGER_ROBUST_ACCURACY], metrics[contract.CHAMPION_ROBUST_ACCURACY] = self.robust
            metrics[contract.ROBUST_ACCURACY_CHANGE] = self.robust[0] - self.robust[1]
        return metrics


def accuracy_metrics(name: str, accuracy: Accuracy) -> dict[str, float]:
    """An accuracy and its 95% Wilson interval under metric names (`name`, `name_low`, `name_high`)."""
    low, high = contract.interval_keys(name)
    return {name: accuracy.value, low: accuracy.low, high: accuracy.high}


def decide(
    challenger_correct: np.ndarray,
    champion_correct: np.ndarray | None,
    thresholds: GateConfig,
    robust_correct: tuple[np.ndarray, np.ndarray] | None = None,
) -> Verdict:
    """Promote the challenger? Always a verdict with its reason; with no champion only the floor applies.
    robust_correct: (challenger, champion) per-sample correctness on every corrupted test set, when the
    challenger was measured under the corruption suite; then its robust accuracy may be at most
    min_robust_accuracy_change below the champion's."""
    challenger = proportion(challenger_correct)
    metrics = {contract.ACCURACY: challenger.value}
    checks = {contract.ACCURACY: MetricThreshold(threshold=float(thresholds.min_accuracy), greater_is_better=True)}
    champion = comparison = robust = None
    if champion_correct is not None:
        champion, comparison = proportion(champion_correct), mcnemar(challenger_correct, champion_correct)
        metrics[contract.ACCURACY_CHANGE] = challenger.value - champion.value
        checks[contract.ACCURACY_CHANGE] = _tolerance(thresholds.min_accuracy_change)
        if robust_correct is not None:
            robust = tuple(float(np.mean(correct)) for correct in robust_correct)
            metrics[contract.ROBUST_ACCURACY_CHANGE] = robust[0] - robust[1]
            checks[contract.ROBUST_ACCURACY_CHANGE] = _tolerance(thresholds.min_robust_accuracy_change)
    versus = _versus(champion, comparison, robust)
    try:
        mlflow.validate_evaluation_results(checks, EvaluationResult(metrics=metrics, artifacts={}))
    except ModelValidationFailedException as failure:
        reason = " ".join(failure.message.split()) + versus
        return Verdict(contract.VALIDATION_FAILED, reason, challenger, champion, comparison, robust)
    reason = f"accuracy {challenger} passes (floor {thresholds.min_accuracy}"
    if champion is None:
        reason += "; no champion yet)"
    else:
        reason += f"; tolerance {thresholds.min_accuracy_change} below the champion"
        if robust is not None:
            reason += f"; robust accuracy tolerance {thresholds.min_robust_accuracy_change}"
        reason += f"){versus}"
    return Verdict(contract.VALIDATION_PASSED, reason, challenger, champion, comparison, robust)


def _tolerance(tolerance: float) -> MetricThreshold:
    """A change (challenger minus champion) that must stay above -tolerance."""
    return MetricThreshold(threshold=-float(tolerance) - FLOAT_SLACK, greater_is_better=True)


def _versus(
    champion: Accuracy | None, comparison: PairedComparison | None, robust: tuple[float, float] | None = None
) -> str:
    if champion is None:
        return ""
    robustness = "" if robust is None else f"; robust accuracy {robust[0]:.4f} against the champion's {robust[1]:.4f}"
    return f" (champion accuracy {champion} on the same test samples; {comparison}{robustness})"


def decide_update(
    old: tuple[np.ndarray, np.ndarray], new: tuple[np.ndarray, np.ndarray], max_old_drop: float
) -> tuple[Verdict, dict[str, float]]:
    """An update's challenger against the champion, each a (challenger, champion) pair of per-sample
    correctness: at most max_old_drop below the champion on the old test split, and no worse than it on the
    new held-out data. Returns the verdict (its accuracies and McNemar test: the old split's) and all four
    accuracies with their intervals under their metric names."""
    on_old = decide(*old, GateConfig(min_accuracy_change=max_old_drop, min_accuracy=0.0))
    on_new = decide(*new, GateConfig(min_accuracy_change=0.0, min_accuracy=0.0))
    passed = not on_old.refused and not on_new.refused
    reason = f"old test split: {on_old.reason}; new held-out data: {on_new.reason}"
    status = contract.VALIDATION_PASSED if passed else contract.VALIDATION_FAILED
    accuracies = (
        accuracy_metrics(contract.CHALLENGER_ACCURACY_OLD, on_old.challenger)
        | accuracy_metrics(contract.CHAMPION_ACCURACY_OLD, on_old.champion)
        | accuracy_metrics(contract.CHALLENGER_ACCURACY_NEW, on_new.challenger)
        | accuracy_metrics(contract.CHAMPION_ACCURACY_NEW, on_new.champion)
    )
    return Verdict(status, reason, on_old.challenger, on_old.champion, on_old.comparison), accuracies
