"""Training-time augmentation (`train -P augment=standard`): random translation, rotation, zoom, contrast and
noise as Keras layers in front of the model being trained, active only in training.

The layers wrap the model for `fit` alone: what is logged, converted and compressed is the model inside,
so no deployable carries them and TFMOT never sees them. Their strengths follow the corruption suite's
units (steps/datasets/corruptions.py), about its level 2: the model learns what it will be measured on.
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

from steps import contract
from steps.parameters import require_choice

# Of the side, each axis: 1.5 px on 8x8 digits, so a whole-pixel move in any direction, diagonals included, lies
# well inside the range (at 1/8 the corners of the range are rarely drawn: in one try on digits the float model
# reached 89% at the worst diagonal against 96% at 3/16).
TRANSLATION = 0.1875
ROTATION_DEGREES = 15.0
ZOOM = 0.1
CONTRAST = 0.3
NOISE_SIGMA = 0.05


def augmentation_layers(mode: str, seed: int) -> list[keras.layers.Layer]:
    """The layers of `mode` (none: no layers), seeded."""
    require_choice("augment", mode, contract.AUGMENTATIONS)
    if mode == "none":
        return []
    return [
        keras.layers.RandomTranslation(TRANSLATION, TRANSLATION, fill_mode="constant", fill_value=0.0, seed=seed),
        keras.layers.RandomRotation(ROTATION_DEGREES / 360, fill_mode="constant", fill_value=0.0, seed=seed + 1),
        keras.layers.RandomZoom(ZOOM, ZOOM, fill_mode="constant", fill_value=0.0, seed=seed + 2),
        keras.layers.RandomContrast(CONTRAST, seed=seed + 3),
        keras.layers.GaussianNoise(NOISE_SIGMA, seed=seed + 4),
        keras.layers.Lambda(lambda x: tf.clip_by_value(x, 0.0, 1.0)),  # pixels stay in [0, 1], as served
    ]


def for_training(model: keras.Model, mode: str, seed: int) -> keras.Model:
    """`model` itself (augment=none), or a model that augments its inputs in training, then runs `model`: the
    same layers and weights, so fitting it fits `model`."""
    layers = augmentation_layers(mode, seed)
    if not layers:
        return model
    inputs = keras.Input(model.input_shape[1:])
    x = inputs
    for layer in layers:
        x = layer(x)
    return keras.Model(inputs, model(x), name=f"{model.name}_augmented")
