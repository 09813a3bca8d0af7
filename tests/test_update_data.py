"""What an update trains on: labelled traffic read from a real prediction log, and new samples split and mixed
with a class-balanced replay of the old data, saved as a data set the steps load back."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import numpy as np
import pytest

from steps.adapt.labelled import NOT_A_CLASS, NOT_KEPT, WRONG_SHAPE, labelled_samples
from steps.adapt.update_data import MIN_NEW_SAMPLES, load_new_test, mix, samples_digest
from steps.datasets.data import Dataset, DatasetError, load_dataset
from steps.monitoring.traffic import log_files, read
from steps.serve.predlog import PredictionLog
from steps.serve.runtime import ModelRef

CLASSES = ("cat", "dog", "emu")
SHAPE = (2, 2, 1)
MODEL = SimpleNamespace(ref=ModelRef("pets", "1", "champion", "run-1"), class_names=list(CLASSES), sample_shape=SHAPE)
OTHER_SHAPE = SimpleNamespace(ref=ModelRef("pets", "2", "champion", "run-2"), class_names=list(CLASSES),
                              sample_shape=(3, 3, 1))  # fmt: skip
OTHER_MODEL = SimpleNamespace(ref=ModelRef("cars", "1", "champion", "run-9"), class_names=list(CLASSES),
                              sample_shape=SHAPE)  # fmt: skip
SOFTMAX = np.array([[0.6, 0.3, 0.1]], np.float32)


def image(value: float, shape=SHAPE) -> np.ndarray:
    return np.full((1, *shape), value, np.float32)


def write_log(path, log_inputs: float = 1.0) -> None:
    """Requests a-f of pets (f: another input shape), g of another model, each with feedback; a retried a."""

    async def serve():
        log = PredictionLog(path, "127.0.0.1:8080:1", log_inputs)
        try:
            for request_id, value in zip("abcde", (0.0, 0.2, 0.4, 0.6, 0.8)):
                await log.log_prediction(request_id, "invocations", MODEL, 1.0, 0.1, image(value), SOFTMAX)
            await log.log_prediction("a", "invocations", MODEL, 1.0, 0.1, image(0.0), SOFTMAX)  # a retry
            await log.log_prediction("f", "invocations", OTHER_SHAPE, 1.0, 0.1, image(1.0, (3, 3, 1)), SOFTMAX)
            await log.log_prediction("g", "invocations", OTHER_MODEL, 1.0, 0.1, image(1.0), SOFTMAX)
            for request_id, label in zip("abcdefg", ("cat", "dog", "emu", "yak", "dog", "cat", "cat")):
                await log.log_feedback(request_id, 0, label)
        finally:
            log.close()

    asyncio.run(serve())


def test_labelled_traffic_takes_each_labelled_input_once_and_counts_every_refusal(tmp_path):
    write_log(tmp_path / "p.db")
    labelled = labelled_samples(read(log_files(str(tmp_path / "p.db"))), "pets", CLASSES, SHAPE)
    # b, c, e, then the retried a (once, at its last attempt); d's 'yak' refused, f another shape, g another model
    assert labelled.y.tolist() == [1, 2, 1, 0]
    assert np.allclose(labelled.x[:, 0, 0, 0], [0.2, 0.4, 0.8, 0.0], atol=0.5 / 255)
    assert labelled.refused == {NOT_A_CLASS: 1, WRONG_SHAPE: 1}
    assert labelled.describe() == (f"4 labelled samples taken (1 refused: {NOT_A_CLASS}; 1 refused: {WRONG_SHAPE})")


def test_inputs_the_server_did_not_keep_are_refused_and_counted(tmp_path):
    write_log(tmp_path / "p.db", log_inputs=0.5)
    labelled = labelled_samples(read(log_files(str(tmp_path / "p.db"))), "pets", CLASSES, SHAPE)
    assert labelled.refused[NOT_KEPT] >= 2 and len(labelled.y) + sum(labelled.refused.values()) == 6


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
    _, repeats = np.unique(data.x_train[:, 0, 0, 0][np.isin(data.x_train[:, 0, 0, 0], x_new[:, 0, 0, 0])],
                           return_counts=True)  # fmt: skip
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
