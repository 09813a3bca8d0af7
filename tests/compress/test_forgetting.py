"""What compression forgot: the samples whose class changed against the float baseline, and the classes that
lost most, named."""

from __future__ import annotations

import numpy as np
import pytest

from steps.compress.forgetting import what_compression_forgot

NAMES = ("cat", "dog", "fox")


def test_flips_and_per_class_changes_are_counted_on_the_same_samples():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2])
    baseline = np.array([0, 0, 0, 1, 1, 1, 1, 1, 2, 0])
    variant = np.array([0, 0, 1, 0, 1, 1, 2, 2, 2, 2])  # cat: 3/4 -> 3/4 (two flips), dog 4/4 -> 2/4, fox 1/2 -> 2/2
    forgetting = what_compression_forgot(baseline, variant, y, NAMES)
    assert forgetting.flip_rate == pytest.approx(5 / 10) and list(forgetting.flipped) == [2, 3, 6, 7, 9]
    table = forgetting.per_class.set_index("class")
    assert table.loc["cat", "change"] == 0 and table.loc["cat", "flipped"] == 2
    assert table.loc["dog", "change"] == pytest.approx(-0.5) and table.loc["fox", "change"] == pytest.approx(0.5)
    assert list(forgetting.hurt_most()["class"]) == ["dog"]
    assert forgetting.summary() == (
        "flip rate 50.00% (5 of 10 test samples change class); classes hurt most: dog -50.0 points"
    )


def test_an_identical_variant_forgot_nothing():
    y = np.array([0, 1, 2, 2])
    forgetting = what_compression_forgot(y, y, y, NAMES)
    assert forgetting.flip_rate == 0 and forgetting.hurt_most().empty
    assert forgetting.summary().endswith("classes hurt most: none")


def test_predictions_of_other_samples_are_refused():
    with pytest.raises(ValueError, match="same test split"):
        what_compression_forgot(np.zeros(5), np.zeros(4), np.zeros(5), NAMES)
