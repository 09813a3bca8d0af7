"""augment=standard: random corruptions in front of the model while it trains, nothing at inference, and the
model inside (what is logged, converted and compressed) is the one that learns."""

from __future__ import annotations

import numpy as np
import pytest
import tf_keras as keras

from steps.datasets.data import Dataset, load_dataset
from steps.modeling.augmentation import for_training
from steps.modeling.training import fine_tune
from steps.settings import FineTuneConfig


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _model() -> keras.Model:
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(10, "softmax")])


def test_no_augmentation_trains_the_model_itself():
    model = _model()
    assert for_training(model, "none", seed=0) is model


def test_standard_augmentation_changes_inputs_in_training_only_and_trains_the_model_inside(digits):
    model = _model()
    fitted = for_training(model, "standard", seed=0)
    x = digits.x_test[:32]
    assert np.allclose(fitted(x, training=False), model(x, training=False))  # served as it is: no augmentation
    assert not np.allclose(fitted(x, training=True), model(x, training=True))
    before = [w.copy() for w in model.get_weights()]
    fitted.compile("adam", "sparse_categorical_crossentropy")
    fitted.fit(digits.x_train[:64], digits.y_train[:64], epochs=1, verbose=0)
    assert not all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    assert not any(layer.name.startswith("random") for layer in model.layers)  # what gets logged has none


def test_an_unknown_augmentation_is_refused_naming_the_choices():
    with pytest.raises(ValueError, match="augment='heavy' is not valid; use one of: none, standard"):
        for_training(_model(), "heavy", seed=0)


def test_fine_tuning_augments_as_the_parents_training_did_and_leaves_the_model_plain(digits):
    """The same seed, the same data: only the augmentation can make the two fine-tuned models differ."""
    train, val = slice(0, 64), slice(0, 32)
    small = Dataset(
        "s",
        "s",
        digits.x_train[train],
        digits.y_train[train],
        digits.x_val[val],
        digits.y_val[val],
        digits.x_test,
        digits.y_test,
        digits.class_names,
    )
    tuned = {}
    for augment in ("none", "standard"):
        model = _model()
        fine_tune(model, small, FineTuneConfig(model_uri="m", epochs=1, augment=augment))
        tuned[augment] = model.get_weights()
        assert [type(layer).__name__ for layer in model.layers] == ["Flatten", "Dense"]
    assert not all(np.array_equal(a, b) for a, b in zip(tuned["none"], tuned["standard"]))
