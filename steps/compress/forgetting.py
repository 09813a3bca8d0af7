"""What compression forgot: the test samples whose class a variant changed against its float baseline, and
the classes that lost most (Hooker et al., "What do compressed deep neural networks forget?", 2019: top-1
barely moves while a few samples and classes lose a lot). numpy and pandas only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

HURT_NAMED = 3  # classes named in the summary line


@dataclass(frozen=True)
class Forgetting:
    flipped: np.ndarray  # indices of the test samples whose predicted class changed
    per_class: pd.DataFrame  # class, support, baseline_accuracy, accuracy, change, flipped
    total: int  # test samples compared

    @property
    def flip_rate(self) -> float:
        return len(self.flipped) / self.total if self.total else 0.0

    def hurt_most(self, n: int = HURT_NAMED) -> pd.DataFrame:
        """The classes that lost accuracy, most first (none if no class lost)."""
        lost = self.per_class[self.per_class["change"] < 0]
        return lost.sort_values(["change", "class"]).head(n)

    def summary(self) -> str:
        hurt = self.hurt_most()
        named = ", ".join(f"{row['class']} {row['change'] * 100:+.1f} points" for _, row in hurt.iterrows())
        return (
            f"flip rate {self.flip_rate:.2%} ({len(self.flipped)} of {self.total} test samples change class); "
            f"classes hurt most: {named or 'none'}"
        )


def what_compression_forgot(
    baseline_predictions: np.ndarray, predictions: np.ndarray, y: np.ndarray, class_names: tuple[str, ...]
) -> Forgetting:
    """Compare a variant's predicted classes with its float baseline's on the same test samples."""
    baseline_predictions, predictions, y = (np.asarray(a) for a in (baseline_predictions, predictions, y))
    if not len(baseline_predictions) == len(predictions) == len(y):
        raise ValueError(
            f"predictions of {len(baseline_predictions)} and {len(predictions)} samples for {len(y)} labels: "
            "baseline and variant must be measured on the same test split"
        )
    flipped = np.flatnonzero(baseline_predictions != predictions)
    rows = []
    for label, name in enumerate(class_names):
        members = y == label
        support = int(members.sum())
        before = float((baseline_predictions[members] == label).mean()) if support else 0.0
        after = float((predictions[members] == label).mean()) if support else 0.0
        rows.append(
            {
                "class": name,
                "support": support,
                "baseline_accuracy": before,
                "accuracy": after,
                "change": after - before,
                "flipped": int((baseline_predictions[members] != predictions[members]).sum()),
            }
        )
    return Forgetting(flipped, pd.DataFrame(rows), len(y))
