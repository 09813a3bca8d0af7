"""Accuracy under a fixed, seeded corruption suite: what a model gets right when its inputs are shifted, turned,
noisy, dimmed, scaled, blurred, flattened or JPEG-compressed (steps/datasets/corruptions.py's robustness kinds).

Every corrupted set depends only on the images, the kind and the level (the
draws per image are seeded by them), so every variant of a data set is
measured on the very same corrupted images and their accuracies compare
sample for sample. Modes: `full`, five levels per kind; `fast`, the third
level (the default severity) only, a fifth of the cost; `off`, nothing.
`robust_accuracy` is the mean over the kinds and levels measured, so a fast
figure and a full one are not comparable: runs record their mode, and a
drop against a baseline is computed only between equal modes.
numpy only: the model comes in as a function from images to probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from steps import contract
from steps.datasets.corruptions import LEVELS, apply_drift
from steps.parameters import require_choice

FAST_LEVEL = 2  # index of the level `fast` measures: the default severity
SEED = 20221  # fixed: a new seed would be a new suite


@dataclass(frozen=True)
class Robustness:
    """Accuracy per kind and level on one split, for one mode."""

    mode: str
    severities: dict[str, tuple[float, ...]]  # kind -> the severities measured, mildest first
    accuracy: dict[str, tuple[float, ...]]  # kind -> accuracy at each of them

    @property
    def mean(self) -> float:
        return float(np.mean([value for values in self.accuracy.values() for value in values]))

    def of_kind(self, kind: str) -> float:
        return float(np.mean(self.accuracy[kind]))

    def as_dict(self) -> dict:
        return {
            "mode": self.mode,
            "mean": self.mean,
            "kinds": {
                kind: {"severities": list(self.severities[kind]), "accuracy": list(self.accuracy[kind])}
                for kind in self.accuracy
            },
        }


def levels_of(mode: str) -> dict[str, tuple[float, ...]]:
    """The severities each kind is measured at in `mode` (none when off)."""
    require_choice("robustness", mode, contract.ROBUSTNESS_MODES)
    if mode == "off":
        return {}
    return {kind: LEVELS[kind] if mode == "full" else (LEVELS[kind][FAST_LEVEL],) for kind in contract.ROBUSTNESS_KINDS}


def corrupted(x: np.ndarray, y: np.ndarray, kind: str, severity: float) -> np.ndarray:
    """The suite's corrupted copy of x at one kind and severity: the same images every time."""
    rng = np.random.default_rng([SEED, contract.ROBUSTNESS_KINDS.index(kind), round(severity * 1000)])
    return apply_drift(x, y, kind, severity, rng)[0]


def measure_robustness(
    predict_proba: Callable[[np.ndarray], np.ndarray], x: np.ndarray, y: np.ndarray, mode: str
) -> Robustness | None:
    """Accuracy of `predict_proba` on every corrupted set of `mode`; None when the mode is off."""
    levels = levels_of(mode)
    if not levels:
        return None
    accuracy = {
        kind: tuple(float((predict_proba(corrupted(x, y, kind, s)).argmax(axis=1) == y).mean()) for s in severities)
        for kind, severities in levels.items()
    }
    return Robustness(mode, levels, accuracy)
