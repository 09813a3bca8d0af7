"""A model nesting another (the transfer-learning shape) becomes one flat model computing the same function."""

from __future__ import annotations

import numpy as np
import tf_keras as keras

from steps.modeling.flatten import flattened, nested_models

SAMPLES = np.random.default_rng(0).random((4, 8, 8, 3), np.float32)


def _backbone() -> keras.Model:
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    skip = keras.layers.Conv2D(4, 1, name="skip")(inputs)
    x = keras.layers.Add(name="add")([x, skip])  # a branch, as in MobileNetV2's residual blocks
    return keras.Model(inputs, x, name="backbone")


def test_a_sequential_nesting_a_functional_backbone_becomes_flat_and_computes_the_same():
    model = keras.Sequential(
        [keras.Input((8, 8, 3)), _backbone(), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)]
    )
    flat = flattened(model)
    assert nested_models(model) and not nested_models(flat)
    assert {"conv", "bn", "skip", "add"} <= {layer.name for layer in flat.layers}
    np.testing.assert_allclose(flat(SAMPLES), model(SAMPLES), rtol=1e-6)


def test_an_inner_layer_named_like_an_outer_one_is_renamed_after_its_model():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(3, 1, name="conv")(inputs)
    outputs = keras.layers.Dense(2, name="head")(keras.layers.GlobalAveragePooling2D()(_backbone()(x, training=False)))
    model = keras.Model(inputs, outputs)
    flat = flattened(model)
    assert {"conv", "backbone_conv"} <= {layer.name for layer in flat.layers}
    np.testing.assert_allclose(flat(SAMPLES), model(SAMPLES), rtol=1e-6)


def test_a_flat_model_is_returned_as_it_is():
    model = _backbone()
    assert flattened(model) is model


def test_a_subclassed_inner_model_has_no_graph_to_replay_and_stays_nested():
    class Doubler(keras.Model):
        def call(self, inputs):
            return inputs * 2

    model = keras.Sequential([keras.Input((8, 8, 3)), Doubler(), keras.layers.Flatten(), keras.layers.Dense(2)])
    assert flattened(model) is model
