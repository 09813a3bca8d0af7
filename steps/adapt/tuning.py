"""update's `learning_rate=tune`: the fine-tuning rate and the replay share, chosen on validation data before
the child runs start.

Each candidate (a rate times a replay share) fine-tunes a copy of the float parent in this process, with the
settings update's `train` child would use and the same split of the new samples, and is judged on two
validation sets: the new samples' (what it learnt) and the original data's validation split (the float
parent's own, or, where an update made it, that of the data the lineage started from), clean and under the
corruption suite (what it kept). Among the candidates that lose at most `max_old_drop` of the old
validation accuracy and `max_robust_accuracy_drop` of its robust accuracy, the one with the best new
validation accuracy wins (ties: the one that kept more). With none within budget, the one that kept most, and
the gate decides. Only the float fine-tuning is tuned: the compression recipe runs once, in the child runs, on
the chosen settings; the gate still judges the result on the test splits.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from steps.adapt.update_data import mix
from steps.core.selection import within_budget
from steps.datasets.data import Dataset
from steps.modeling.robustness import measure_robustness
from steps.settings import TUNE_RATE_FACTORS, TUNE_REPLAY_FRACTIONS


@dataclass(frozen=True)
class Kept:
    """A model's accuracy on the old validation split: clean, and under the corruption suite (None: off)."""

    accuracy: float
    robust_accuracy: float | None


@dataclass(frozen=True)
class Candidate:
    learning_rate: float
    replay_fraction: float
    new_val_accuracy: float  # on the new samples' validation split
    old: Kept
    epochs: int  # fine-tuning epochs early stopping let it run

    def drops(self, reference: Kept) -> tuple[float, float | None]:
        """What it lost on the old validation split against the float parent: accuracy, robust accuracy."""
        robust = None
        if reference.robust_accuracy is not None and self.old.robust_accuracy is not None:
            robust = reference.robust_accuracy - self.old.robust_accuracy
        return reference.accuracy - self.old.accuracy, robust

    def as_dict(self, reference: Kept) -> dict:
        drop, robust_drop = self.drops(reference)
        return dataclasses.asdict(self) | {"old_val_accuracy_drop": drop, "old_val_robust_accuracy_drop": robust_drop}


def within(candidate: Candidate, reference: Kept, max_old_drop: float, max_robust_drop: float) -> bool:
    drop, robust_drop = candidate.drops(reference)
    return within_budget(drop, max_old_drop) and (robust_drop is None or within_budget(robust_drop, max_robust_drop))


def choose(
    candidates: list[Candidate], reference: Kept, max_old_drop: float, max_robust_drop: float
) -> tuple[Candidate, bool]:
    """The best new validation accuracy within budget (ties: the more old accuracy kept); with none within
    budget, the one that kept most. Returns it and whether it was within budget."""
    eligible = [c for c in candidates if within(c, reference, max_old_drop, max_robust_drop)]
    if eligible:
        return max(eligible, key=lambda c: (c.new_val_accuracy, c.old.accuracy)), True
    return max(candidates, key=lambda c: (c.old.accuracy, c.new_val_accuracy)), False


def kept(model, old: Dataset, robustness: str) -> Kept:
    """A Keras model's accuracy on the old validation split, clean and corrupted."""

    def probabilities(x: np.ndarray) -> np.ndarray:
        return model.predict(x, batch_size=256, verbose=0)

    accuracy = float((probabilities(old.x_val).argmax(axis=1) == old.y_val).mean())
    robust = measure_robustness(probabilities, old.x_val, old.y_val, robustness)
    return Kept(accuracy, None if robust is None else robust.mean)


def tune(
    parent,
    old: Dataset,
    x_new: np.ndarray,
    y_new: np.ndarray,
    fine_tuning,  # TrainConfig: the train child's settings; its learning_rate is the one `auto` gives
    seed: int,
    original: Dataset | None = None,
) -> tuple[Kept, list[Candidate]]:
    """Fine-tune a copy of `parent` once per candidate on `old` (its training data, replayed) mixed with the new
    samples; each is judged on the validation split of `original` (the data the lineage started from, where an
    update made the parent; default `old`). Returns the parent's figures and every candidate's."""
    from steps.modeling.architectures import predicted_classes
    from steps.modeling.training import independent_copy, train

    original = original or old
    reference = kept(parent, original, fine_tuning.robustness)
    base_rate = fine_tuning.step_size()
    rates = [float(f"{base_rate * factor:.3g}") for factor in TUNE_RATE_FACTORS]  # 0.0003, not 0.00030000000000000003
    grid = [(rate, replay) for rate in rates for replay in TUNE_REPLAY_FRACTIONS]
    candidates = []
    for number, (rate, replay) in enumerate(grid, 1):
        data = mix(x_new, y_new, old, replay, seed).as_dataset()
        settings = dataclasses.replace(fine_tuning, learning_rate=str(rate))
        teacher = parent if settings.distill > 0 else None  # the copy trains; the parent stays as it was
        trained = train(settings, data, independent_copy(parent), teacher=teacher)
        new_val = float((predicted_classes(trained.model, data.x_val) == data.y_val).mean())
        candidate = Candidate(
            rate, replay, new_val, kept(trained.model, original, settings.robustness), len(trained.history["loss"])
        )
        candidates.append(candidate)
        print(f"update: tuning {number}/{len(grid)}: {describe(candidate, reference)}", flush=True)
    return reference, candidates


def describe(candidate: Candidate, reference: Kept) -> str:
    drop, robust_drop = candidate.drops(reference)
    robust = "" if robust_drop is None else f", robust {candidate.old.robust_accuracy:.4f} ({-robust_drop:+.4f})"
    return (
        f"rate {candidate.learning_rate:.3g}, replay {candidate.replay_fraction}: new validation "
        f"{candidate.new_val_accuracy:.4f}, old validation {candidate.old.accuracy:.4f} ({-drop:+.4f}){robust}, "
        f"{candidate.epochs} epochs"
    )
