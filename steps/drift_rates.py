"""How often the drift tests alarm on a real model: false alarms on clean windows, detection of each simulated drift.

The e2e tests assert these rates and `bench/drift.py` writes them to bench/RESULTS.md, from the same code.
`predict` is the deployable's probability function (LiteRT in both); samples are held out (never trained on).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from steps import contract
from steps.drift import DEFAULT_ALPHA, drift_report, make_reference, verdict
from steps.shifts import apply_drift
from steps.stats import proportion

WINDOW = 200  # samples per window, the size the rates are stated for
Predict = Callable[[np.ndarray], np.ndarray]


@dataclass
class Rate:
    """How many of `windows` windows the tests flagged, and which test flagged them (one count per statistic)."""

    flagged: int
    windows: int
    by_statistic: dict[str, int]
    accuracy: float | None = None  # mean accuracy of the model on the windows (drifted ones)

    @property
    def rate(self) -> float:
        return self.flagged / self.windows

    def __str__(self) -> str:
        """The rate with its 95% Wilson interval: 100 windows resolve a rate to a few percent, not better."""
        interval = proportion(np.arange(self.windows) < self.flagged)
        return f"{self.rate:.1%} [{interval.low:.1%}, {interval.high:.1%}] of {self.windows}"


def false_alarms_against_redrawn_references(
    predict: Predict, x: np.ndarray, y: np.ndarray, reference_size: int, repeats: int,
    alphas: tuple[float, ...] = (DEFAULT_ALPHA,), window: int = WINDOW, seed: int = 0,
) -> dict[float, Rate]:  # fmt: skip
    """Each repeat splits the held-out samples at random into a reference and a disjoint clean window.

    Exchangeable samples, as the tests assume: the rate is the procedure's own, averaged over references.
    (Windows drawn from one fixed pool overlap, vary less than live traffic and flatter the rate.)
    """
    if reference_size + window > len(y):
        raise ValueError(
            f"{len(y)} held-out samples cannot make a reference of {reference_size} and a window of {window}"
        )
    probabilities = predict(x)
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(repeats):
        order = rng.permutation(len(y))
        kept, tested = order[:reference_size], order[reference_size : reference_size + window]
        profile = make_reference(probabilities[kept], y[kept], x[kept], rng=rng)
        report = drift_report(profile, probabilities[tested], x[tested], rng=rng)
        rows.append([report.p_values[name] for name in contract.DRIFT_STATISTICS])
    rates = {}
    for alpha in alphas:
        verdicts = [verdict(row, alpha) for row in rows]
        by_statistic = np.sum([flags for _, _, flags in verdicts], axis=0)
        rates[alpha] = Rate(sum(drifted for drifted, _, _ in verdicts), repeats,
                            dict(zip(contract.DRIFT_STATISTICS, map(int, by_statistic))))  # fmt: skip
    return rates


def detection(
    predict: Predict, reference, x: np.ndarray, y: np.ndarray, kind: str, windows: int,
    severity: float | None = None, window: int = WINDOW, seed: int = 0,
) -> Rate:  # fmt: skip
    """Windows drawn from the held-out samples, drifted (`kind` at `severity`, its default if None), tested."""
    rng = np.random.default_rng(seed)
    flagged, accuracy, by_statistic = 0, [], dict.fromkeys(contract.DRIFT_STATISTICS, 0)
    for _ in range(windows):
        chosen = rng.choice(len(y), window, replace=False)
        drifted_x, drifted_y = apply_drift(x[chosen], y[chosen], kind, severity, rng)
        probabilities = predict(drifted_x)
        report = drift_report(reference, probabilities, drifted_x, rng=rng)
        flagged += report.drifted
        accuracy.append(float((probabilities.argmax(axis=1) == drifted_y).mean()))
        for name in report.reasons:
            by_statistic[name] += 1
    return Rate(flagged, windows, by_statistic, float(np.mean(accuracy)))
