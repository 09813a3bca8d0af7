"""An update's data: new samples split three ways, replay from every class making up its share, an epoch as long
as the old training set, saved and loaded back, refused with the fix when unusable, digested."""

from __future__ import annotations

import numpy as np
import pytest

from steps.adapt.update_data import MIN_NEW_SAMPLES, load_new_test, mix, samples_digest
from steps.datasets.data import Dataset, DatasetError, load_dataset

CLASSES = ("cat", "dog", "emu")
SHAPE = (2, 2, 1)


def old_data(n_per_class: int = 30, classes: int = 3) -> Dataset:
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(classes), n_per_class)
    x = rng.random((len(y), *SHAPE), dtype=np.float32)
    names = CLASSES[:classes]
    return Dataset("old", "test", x, y, x[:9], y[:9], x[:12] + 0, y[:12], names)


def test_new_samples_are_split_three_ways_and_replay_makes_up_its_share_from_every_class():
    rng = np.random.default_rng(1)
    x_new, y_new = rng.random((100, *SHAPE), dtype=np.float32), np.zeros(100, np.int64)  # only cats are new
    old = old_data()
    data = mix(x_new, y_new, old, replay_fraction=0.5, seed=0)
    assert len(data.y_new_test) == 30 and len(data.y_val) == 14 and data.new_train == 56
    assert data.replayed == 56 and len(data.y_train) == 112
    replayed = data.y_train[~np.isin(data.x_train[:, 0, 0, 0], x_new[:, 0, 0, 0])]
    assert sorted(np.bincount(replayed, minlength=3).tolist()) == [18, 19, 19], "evenly from every old class"
    assert np.array_equal(data.x_test, old.x_test) and data.class_names == old.class_names
    assert mix(x_new, y_new, old, replay_fraction=0.0, seed=0).replayed == 0
    assert mix(x_new, y_new, old, 0.5, seed=0).x_train.tobytes() == data.x_train.tobytes(), "seeded"


def test_an_epoch_is_as_long_as_the_old_training_set_and_the_new_samples_repeat_evenly_to_fill_their_share():
    rng = np.random.default_rng(4)
    x_new, y_new = rng.random((50, *SHAPE), dtype=np.float32), np.zeros(50, np.int64)
    old = old_data(n_per_class=100)  # 300 old training samples
    data = mix(x_new, y_new, old, replay_fraction=0.5, seed=0)
    assert data.new_train == 28 and len(data.y_train) == 300 and data.replayed == 150
    _, repeats = np.unique(
        data.x_train[:, 0, 0, 0][np.isin(data.x_train[:, 0, 0, 0], x_new[:, 0, 0, 0])], return_counts=True
    )
    assert len(repeats) == 28 and set(repeats) <= {5, 6}, "each new sample 150/28 times, give or take one"


def test_saved_update_data_loads_back_as_a_data_set_with_its_class_order_and_splits(tmp_path):
    rng = np.random.default_rng(2)
    x_new, y_new = rng.random((40, *SHAPE), dtype=np.float32), np.arange(40) % 2
    data = mix(x_new, y_new, old_data(), 0.5, seed=0)
    path = data.save(tmp_path / "update.npz")
    loaded = load_dataset(str(path))
    assert loaded.class_names == CLASSES
    for split in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        assert np.array_equal(getattr(loaded, split), getattr(data, split)), split
    x_held, y_held = load_new_test(path)
    assert np.array_equal(x_held, data.x_new_test) and np.array_equal(y_held, data.y_new_test)


def test_too_few_new_samples_another_shape_or_a_bad_share_are_refused_with_the_fix():
    rng = np.random.default_rng(3)
    with pytest.raises(DatasetError, match=f"at least {MIN_NEW_SAMPLES} are needed"):
        mix(rng.random((5, *SHAPE), dtype=np.float32), np.zeros(5, np.int64), old_data(), 0.5, 0)
    with pytest.raises(DatasetError, match="shaped \\(3, 3, 1\\) but the model takes \\(2, 2, 1\\)"):
        mix(rng.random((30, 3, 3, 1), dtype=np.float32), np.zeros(30, np.int64), old_data(), 0.5, 0)
    with pytest.raises(ValueError, match="replay_fraction must be in \\[0, 1\\)"):
        mix(rng.random((30, *SHAPE), dtype=np.float32), np.zeros(30, np.int64), old_data(), 1.0, 0)


def test_the_same_new_samples_have_the_same_digest():
    x, y = np.ones((3, *SHAPE), np.float32), np.arange(3)
    assert samples_digest(x, y) == samples_digest(x.copy(), y.copy()) != samples_digest(x, y[::-1].copy())
