"""What an accuracy measured on n samples can and cannot say: Wilson intervals and the exact McNemar test.

On digits the test split holds 360 samples: one sample is 0.28 points and a
95% interval spans about +-1.3 points around 98%. Two models compared on the
same samples differ only where one is right and the other wrong; McNemar's
test asks whether that split could be chance. scipy does the arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest

CONFIDENCE = 0.95
CHANCE_MARGIN = 0.05  # how far above chance a model must be able to be, before it is worth compressing


@dataclass(frozen=True)
class Accuracy:
    """Share of correct predictions with its 95% Wilson score interval."""

    correct: int
    total: int
    low: float
    high: float

    @property
    def value(self) -> float:
        return self.correct / self.total

    def __str__(self) -> str:
        return f"{self.value:.4f} [{self.low:.4f}, {self.high:.4f}] on {self.total} samples"


@dataclass(frozen=True)
class PairedComparison:
    """Two models on the same samples: where they disagree about being right, and McNemar's exact p-value."""

    only_first_right: int  # samples the first model gets right and the second wrong
    only_second_right: int
    p_value: float  # two-sided; 1.0 when they never disagree

    def __str__(self) -> str:
        return (
            f"McNemar exact p={self.p_value:.3g} ({self.only_first_right} samples only the challenger gets right, "
            f"{self.only_second_right} only the champion)"
        )


def proportion(correct: np.ndarray) -> Accuracy:
    """Accuracy of per-sample correctness flags, with its Wilson interval."""
    correct = np.asarray(correct, bool)
    return wilson(int(correct.sum()), correct.size)


def wilson(hits: int, total: int) -> Accuracy:
    """`hits` correct of `total`, with its Wilson interval."""
    if total == 0:
        raise ValueError("the accuracy of zero samples is undefined")
    interval = binomtest(hits, total).proportion_ci(confidence_level=CONFIDENCE, method="wilson")
    return Accuracy(hits, total, float(interval.low), float(interval.high))


def chance_level(labels: np.ndarray, n_classes: int) -> float:
    """What a model that ignores its input scores: guessing uniformly, or always answering the commonest class."""
    shares = np.bincount(np.asarray(labels), minlength=n_classes) / len(labels)
    return max(1.0 / n_classes, float(shares.max()))


def no_better_than_chance(measured: Accuracy, labels: np.ndarray, n_classes: int) -> bool:
    """Even the top of the accuracy's interval is within CHANCE_MARGIN of chance: the model has learnt nothing
    that these samples can show."""
    return measured.high <= chance_level(labels, n_classes) + CHANCE_MARGIN


def accuracy(predicted: np.ndarray, truth: np.ndarray) -> Accuracy:
    return proportion(np.asarray(predicted) == np.asarray(truth))


def mcnemar(first_correct: np.ndarray, second_correct: np.ndarray) -> PairedComparison:
    """Exact (binomial) McNemar test on per-sample correctness of two models over the same samples."""
    first_correct, second_correct = np.asarray(first_correct, bool), np.asarray(second_correct, bool)
    if first_correct.shape != second_correct.shape:
        raise ValueError(f"paired test needs the same samples: {first_correct.shape} vs {second_correct.shape}")
    only_first = int(np.sum(first_correct & ~second_correct))
    only_second = int(np.sum(~first_correct & second_correct))
    disagreements = only_first + only_second
    p_value = 1.0 if disagreements == 0 else float(binomtest(only_first, disagreements, 0.5).pvalue)
    return PairedComparison(only_first, only_second, p_value)
