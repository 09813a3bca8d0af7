"""The model architectures `train` can build, as tf_keras models (TFMOT rejects Keras 3)."""

from __future__ import annotations

import math

import numpy as np
import tf_keras as keras

from steps.contract import ARCHITECTURES, MOBILENETS
from steps.parameters import require_choice
from steps.settings import TrainConfig

NORMALIZE = "normalize"  # the mobilenets' layer that maps [0, 1] pixels to their [-1, 1]
FLATTEN_TARGET = 4  # pool until the feature map is about this wide, so the dense head stays modest


def build_model(
    architecture: str, input_shape: tuple[int, ...], n_classes: int, width: int, alpha: float = TrainConfig.alpha
) -> keras.Model:
    """A fresh, uncompiled classifier; `width` scales every layer of cnn, dscnn and mlp, `alpha` the mobilenets.

    The default cnn on digits (8x8x1, width 32) has about 190k parameters:
    enough that compression results are about weights, not file-format overhead.
    """
    require_choice("architecture", architecture, ARCHITECTURES)
    if architecture in MOBILENETS:
        return _mobilenet(architecture, input_shape, n_classes, alpha)
    return {"cnn": _cnn, "dscnn": _dscnn, "mlp": _mlp}[architecture](input_shape, n_classes, width)


def _mobilenet(architecture: str, input_shape, n_classes, alpha) -> keras.Model:
    """tf_keras's MobileNetV2 or MobileNetV3Small (random init, no download), as one flat functional model:
    the application is built on this model's own tensors, so TFMOT sees every layer (a nested model it cannot
    quantize). Inputs stay pixels in [0, 1], the contract of every deployable; the [-1, 1] these networks
    expect is the `normalize` layer inside. V3 is the minimalistic form: its hard-swish and squeeze-excite
    blocks are what TFMOT's QAT rejects."""
    inputs = keras.layers.Input(input_shape)
    normalized = keras.layers.Rescaling(2.0, offset=-1.0, name=NORMALIZE)(inputs)
    common = {"input_tensor": normalized, "alpha": alpha, "include_top": False, "weights": None, "pooling": "avg"}
    if architecture == "mobilenetv2":
        backbone = keras.applications.MobileNetV2(**common)
    else:
        backbone = keras.applications.MobileNetV3Small(**common, minimalistic=True, include_preprocessing=False)
    features = keras.layers.Dropout(0.2, name="dropout")(backbone.output)
    outputs = keras.layers.Dense(n_classes, activation="softmax", name="probabilities")(features)
    return keras.Model(inputs, outputs, name=architecture)


def _cnn(input_shape, n_classes, width) -> keras.Model:
    side = min(input_shape[:2])
    blocks = max(1, int(math.log2(max(side // FLATTEN_TARGET, 1))))
    layers = [keras.layers.Input(input_shape)]
    filters = width
    for block in range(blocks):
        layers += [
            keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{block}a"),
            keras.layers.Conv2D(filters * 2, 3, padding="same", activation="relu", name=f"conv{block}b"),
            keras.layers.MaxPooling2D(2, name=f"pool{block}"),
        ]
        filters *= 2
    layers += [
        keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name="conv_head"),
        keras.layers.Flatten(name="flatten"),
        keras.layers.Dense(width * 4, activation="relu", name="dense"),
        keras.layers.Dropout(0.3, name="dropout"),
        keras.layers.Dense(n_classes, activation="softmax", name="probabilities"),
    ]
    return keras.Sequential(layers, name="cnn")


def _dscnn(input_shape, n_classes, width) -> keras.Model:
    """MobileNet's depthwise-separable blocks: a 3x3 filter per channel (stride 2), then a 1x1 mix of channels,
    and global average pooling instead of a dense head. On digits (width 32) about 13k parameters, against
    the cnn's 190k, at a few times fewer multiply-adds."""
    side = min(input_shape[:2])
    blocks = max(1, int(math.log2(max(side // 2, 1))))
    layers = [
        keras.layers.Input(input_shape),
        keras.layers.Conv2D(width, 3, padding="same", activation="relu", name="stem"),
    ]
    filters = width
    for block in range(blocks):
        filters *= 2
        layers += [
            keras.layers.DepthwiseConv2D(3, strides=2, padding="same", activation="relu", name=f"dw{block}"),
            keras.layers.Conv2D(filters, 1, activation="relu", name=f"pw{block}"),
        ]
    layers += [
        keras.layers.GlobalAveragePooling2D(name="pool"),
        keras.layers.Dropout(0.2, name="dropout"),
        keras.layers.Dense(n_classes, activation="softmax", name="probabilities"),
    ]
    return keras.Sequential(layers, name="dscnn")


def _mlp(input_shape, n_classes, width) -> keras.Model:
    return keras.Sequential(
        [
            keras.layers.Input(input_shape),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dense(width * 8, activation="relu", name="dense0"),
            keras.layers.Dense(width * 4, activation="relu", name="dense1"),
            keras.layers.Dropout(0.2, name="dropout"),
            keras.layers.Dense(n_classes, activation="softmax", name="probabilities"),
        ],
        name="mlp",
    )


def kernel_sparsity(model: keras.Model) -> float:
    """Fraction of exactly-zero values among the kernels (biases excluded, as pruning leaves them)."""
    # "conv/kernel:0", not the quantization ranges "quant_conv/kernel_min:0" that QAT adds
    kernels = [w.numpy() for w in model.weights if w.name.rsplit("/", 1)[-1].split(":")[0] == "kernel"]
    total = sum(k.size for k in kernels)
    return float(sum(int(np.count_nonzero(k == 0)) for k in kernels) / total) if total else 0.0


def predicted_classes(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """The Keras model's predicted class per sample."""
    return model.predict(x, batch_size=256, verbose=0).argmax(axis=1)
