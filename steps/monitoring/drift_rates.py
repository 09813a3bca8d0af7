"""How often the drift tests alarm on a real model: false alarms on clean windows, detection of each simulated drift.

The e2e tests assert these rates and `bench/drift.py` writes them to bench/RESULTS.md, from the same code.
`predict` is the deployable's probability function (LiteRT in both); samples are held out (never trained on).
Within one rate no sample is in two windows (`disjoint_windows`), so the windows are independent trials against
the reference and the rate's interval is the one that many windows support: on the 360 test samples of digits,
7 windows of 50, and an interval about 40 points wide. Different rates may reuse the same samples.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from steps import contract
from steps.datasets.corruptions import apply_drift
from steps.monitoring.drift_statistics import DEFAULT_ALPHA, verdict
from steps.monitoring.reference_profile import ReferenceProfile, disjoint_windows, drift_report, rate_interval

WINDOW = 50  # samples per window: the digits test split (360) makes 7 disjoint windows of it
Predict = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Rate:
    """How many of `windows` disjoint windows the verdict flagged, and which test flagged them (one count each)."""

    flagged: int
    windows: int
    window_size: int
    by_statistic: dict[str, int]
    accuracy: float  # of the model on the windows' (drifted) samples

    @property
    def rate(self) -> float:
        return self.flagged / self.windows

    @property
    def interval(self) -> tuple[float, float]:
        return rate_interval(self.flagged, self.windows)

    def __str__(self) -> str:
        low, high = self.interval
        return f"{self.flagged} of {self.windows}: {self.rate:.0%} [{low:.0%}, {high:.0%}]"


def measure(
    predict: Predict,
    reference: ReferenceProfile,
    x: np.ndarray,
    y: np.ndarray,
    kind: str,
    severity: float | None = None,
    alphas: tuple[float, ...] = (DEFAULT_ALPHA,),
    window: int = WINDOW,
    seed: int = 0,
) -> dict[float, Rate]:
    """Held-out samples cut into disjoint windows, each drifted (`kind` at `severity`, its default if None) and
    tested against the reference; per alpha, the rate of flagged windows. (Clean windows: `calibrate`.)"""
    rng = np.random.default_rng(seed)
    rows, correct = [], 0
    windows = disjoint_windows(len(y), window, rng)
    if not len(windows):
        raise ValueError(f"{len(y)} held-out samples cannot make a window of {window}")
    for chosen in windows:
        drifted_x, drifted_y = apply_drift(x[chosen], y[chosen], kind, severity, rng)
        probabilities = predict(drifted_x)
        report = drift_report(reference, probabilities, drifted_x, rng=rng)
        rows.append([report.p_values[name] for name in contract.DRIFT_STATISTICS])
        correct += int((probabilities.argmax(axis=1) == drifted_y).sum())
    return rates_of(rows, alphas, window, correct / windows.size)


def rates_of(p_values, alphas: tuple[float, ...], window: int, accuracy: float) -> dict[float, Rate]:
    """Per alpha, the Rate of windows whose p-values (one row per window, DRIFT_STATISTICS order) the verdict flags;
    also for the clean windows a profile's calibration stores."""
    rates = {}
    for alpha in alphas:
        verdicts = [verdict(row, alpha) for row in p_values]
        by_statistic = dict(zip(contract.DRIFT_STATISTICS, map(int, np.sum([below for *_, below in verdicts], 0))))
        flagged = sum(drifted for drifted, *_ in verdicts)
        rates[alpha] = Rate(flagged, len(verdicts), window, by_statistic, accuracy)
    return rates
