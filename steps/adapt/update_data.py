"""The data an update trains on: new samples split three ways, mixed with a class-balanced replay of the old data.

New samples (a data set's or labelled traffic's) are split, stratified where
every class has enough: NEW_TEST_FRACTION held out for the gate, then
NEW_VAL_FRACTION of the rest for early stopping, the rest for training. The
training split is at least as large as the old one (the recipe's epoch counts
and pruning schedule were set for that many steps): replayed old training
samples, drawn evenly from every class so the model does not forget the
classes the new data lacks, make `replay_fraction` of it (so, shuffled each
epoch, of every batch on average), and the new training samples, repeated
evenly, the rest. The old test split is carried unchanged: the
gate compares champion and challenger on it and on the new held-out samples,
separately. Saved as a data set .npz (steps/datasets/data.py reads it back, class order
and validation split included). numpy only.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from steps.datasets.data import NPZ_CLASS_NAMES, Dataset, DatasetError, stratified_split

NEW_TEST_FRACTION = 0.3  # of the new samples: held out, the gate's new data
NEW_VAL_FRACTION = 0.2  # of the rest: early stopping
MIN_NEW_SAMPLES = 20  # fewer cannot fill three splits with more than a handful each
NEW_TEST_KEYS = ("x_new_test", "y_new_test")  # extra keys of the .npz: the new held-out samples


@dataclass(frozen=True)
class UpdateData:
    x_train: np.ndarray  # new training samples and replayed old ones, shuffled
    y_train: np.ndarray
    x_val: np.ndarray  # new samples: early stopping
    y_val: np.ndarray
    x_test: np.ndarray  # the old test split, unchanged
    y_test: np.ndarray
    x_new_test: np.ndarray  # new samples held out for the gate
    y_new_test: np.ndarray
    class_names: tuple[str, ...]
    new_train: int  # distinct new samples in the training split (repeated to fill their share of it)
    replayed: int  # old samples in the training split

    def save(self, path: str | Path) -> Path:
        arrays = {name: getattr(self, name) for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")}
        new_test = dict(zip(NEW_TEST_KEYS, (self.x_new_test, self.y_new_test)))
        np.savez_compressed(path, **arrays, **new_test, **{NPZ_CLASS_NAMES: np.array(self.class_names)})
        return Path(path)

    def as_dataset(self) -> Dataset:
        """As `train` takes it, without the new held-out samples (the gate's)."""
        return Dataset(
            "update",
            "-",
            self.x_train,
            self.y_train,
            self.x_val,
            self.y_val,
            self.x_test,
            self.y_test,
            self.class_names,
        )

    def describe(self) -> str:
        repeats = (len(self.y_train) - self.replayed) / max(self.new_train, 1)
        return (
            f"training on {self.new_train} new samples (each {repeats:.1f} times an epoch) + {self.replayed} "
            f"replayed old ones, early stopping on {len(self.y_val)} new, gate on {len(self.y_new_test)} new and "
            f"{len(self.y_test)} old test samples"
        )


def samples_digest(x: np.ndarray, y: np.ndarray) -> str:
    """Content hash of new samples: the same data, the same digest (update's reuse and lineage key)."""
    sha = hashlib.sha256()
    for array in (x, y):
        sha.update(str(array.shape).encode())
        sha.update(np.ascontiguousarray(array).tobytes())
    return sha.hexdigest()[:16]


def mix(x_new: np.ndarray, y_new: np.ndarray, old: Dataset, replay_fraction: float, seed: int) -> UpdateData:
    """Split the new samples and mix their training part with a class-balanced replay of old.x_train."""
    if not 0.0 <= replay_fraction < 1.0:
        raise ValueError(
            f"replay_fraction must be in [0, 1): the share of old samples in training, got {replay_fraction}"
        )
    if len(y_new) < MIN_NEW_SAMPLES:
        raise DatasetError(
            f"{len(y_new)} new labelled samples are too few to fine-tune, stop early and judge on; "
            f"at least {MIN_NEW_SAMPLES} are needed (send more feedback, or pass a data set)"
        )
    if tuple(x_new.shape[1:]) != old.input_shape:
        raise DatasetError(f"new samples are shaped {x_new.shape[1:]} but the model takes {old.input_shape}")
    rng = np.random.default_rng(seed)
    x_rest, x_new_test, y_rest, y_new_test = stratified_split(x_new, y_new, NEW_TEST_FRACTION, seed)
    x_train_new, x_val, y_train_new, y_val = stratified_split(x_rest, y_rest, NEW_VAL_FRACTION, seed)
    # An epoch at least as long as the original training set's: the recipe's epochs and pruning schedule were
    # set for that many steps. New samples repeat (each as often as the others) to fill their share.
    total = max(len(old.y_train), round(len(y_train_new) / (1.0 - replay_fraction)))
    replay = balanced_draw(old.y_train, round(total * replay_fraction), rng)
    repeated = np.resize(rng.permutation(len(y_train_new)), total - len(replay))
    order = rng.permutation(total)
    x_train = np.concatenate([x_train_new[repeated], old.x_train[replay]])[order]
    y_train = np.concatenate([y_train_new[repeated], old.y_train[replay]])[order]
    return UpdateData(
        x_train.astype(np.float32),
        y_train.astype(np.int64),
        x_val.astype(np.float32),
        y_val.astype(np.int64),
        old.x_test,
        old.y_test,
        x_new_test.astype(np.float32),
        y_new_test.astype(np.int64),
        old.class_names,
        len(y_train_new),
        len(replay),
    )


def balanced_draw(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of n samples, as evenly spread over the classes present as n allows (a class with too few
    samples gives all it has, then is drawn again)."""
    classes = np.unique(labels)
    if n == 0 or len(classes) == 0:
        return np.zeros(0, np.int64)
    per_class = np.full(len(classes), n // len(classes))
    per_class[rng.permutation(len(classes))[: n % len(classes)]] += 1
    chosen = []
    for label, count in zip(classes, per_class):
        members = np.flatnonzero(labels == label)
        chosen.append(rng.choice(members, count, replace=count > len(members)))
    return np.concatenate(chosen)


def load_new_test(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """The new held-out samples saved beside an update's data set."""
    with np.load(path, allow_pickle=False) as archive:
        return archive[NEW_TEST_KEYS[0]], archive[NEW_TEST_KEYS[1]]
