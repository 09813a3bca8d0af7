"""`dataset=shapes`: drawn here, the same on every machine and at every size, split like any other data set."""

from __future__ import annotations

import numpy as np
import pytest

from steps.datasets import shapes
from steps.datasets.data import load_dataset


def test_the_same_seed_draws_the_same_images_and_a_larger_set_starts_with_them():
    small, small_labels = shapes.generate_shapes(16, per_class=3)
    again, _ = shapes.generate_shapes(16, per_class=3)
    larger, larger_labels = shapes.generate_shapes(16, per_class=5)
    np.testing.assert_array_equal(small, again)
    np.testing.assert_array_equal(small[:3], larger[:3])  # the first class's first three
    assert small.dtype == np.uint8 and small.shape == (30, 16, 16, 3)
    assert list(np.bincount(small_labels)) == [3] * 10 and list(np.bincount(larger_labels)) == [5] * 10


def test_a_scene_is_the_same_at_every_size_up_to_its_grain():
    big, _ = shapes.generate_shapes(64, per_class=4, classes=("star",))
    small, _ = shapes.generate_shapes(32, per_class=4, classes=("star",))
    shrunk = big.reshape(4, 32, 2, 32, 2, 3).astype(float).mean(axis=(2, 4))
    same_scene = np.abs(shrunk - small).mean()
    other_scene = np.abs(shrunk - np.roll(small, 1, axis=0)).mean()
    assert same_scene < other_scene / 3


def test_every_class_draws_something_that_differs_from_the_background():
    images, labels = shapes.generate_shapes(32, per_class=6)
    for label, name in enumerate(shapes.CLASSES):
        spread = images[labels == label].astype(float).std(axis=(1, 2)).mean()
        assert spread > 20, f"{name} images are nearly flat"


def test_an_unknown_class_is_refused_naming_the_known_ones():
    with pytest.raises(ValueError, match="unknown shape classes \\['oval'\\]; known: circle, ring"):
        shapes.generate_shapes(16, classes=("circle", "oval"))


def test_dataset_shapes_loads_at_image_size_with_stratified_splits(monkeypatch):
    monkeypatch.setattr(shapes, "PER_CLASS", 20)  # the pinned 400 per class take seconds to draw
    data = load_dataset("shapes", image_size=24)
    assert data.name == "shapes" and data.class_names == shapes.CLASSES
    assert data.input_shape == (24, 24, 3) and data.x_train.dtype == np.float32
    assert 0.0 <= data.x_train.min() and data.x_train.max() <= 1.0
    assert len(data.y_train) + len(data.y_val) + len(data.y_test) == 200
    assert list(np.bincount(data.y_test)) == [4] * 10


def test_dataset_shapes_is_drawn_once_per_size_then_read_back(monkeypatch):
    monkeypatch.setattr(shapes, "PER_CLASS", 6)
    first = load_dataset("shapes", image_size=20)
    monkeypatch.setattr(shapes, "generate_shapes", _must_not_draw)
    again = load_dataset("shapes", image_size=20)
    np.testing.assert_array_equal(again.x_train, first.x_train)
    np.testing.assert_array_equal(again.y_test, first.y_test)
    monkeypatch.setattr(shapes, "PER_CLASS", 7)  # another recipe: drawn anew, not read back
    with pytest.raises(AssertionError, match="drawn again"):
        load_dataset("shapes", image_size=20)


def _must_not_draw(*args, **kwargs):
    raise AssertionError("shapes drawn again although the same recipe was cached")
