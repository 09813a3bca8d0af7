"""The architectures: the depthwise-separable cnn is a fraction of the cnn and classifies any image size; the
mobilenets are flat models that normalise their own inputs."""

from __future__ import annotations

import numpy as np
import pytest
import tf_keras as keras

from steps.modeling.architectures import NORMALIZE, build_model


@pytest.mark.parametrize("shape", [(8, 8, 1), (28, 28, 3)])
def test_the_depthwise_separable_cnn_is_a_fraction_of_the_cnn_and_classifies_any_image_size(shape):
    dscnn, cnn = build_model("dscnn", shape, 10, width=32), build_model("cnn", shape, 10, width=32)
    assert dscnn.count_params() < cnn.count_params() / 10
    assert any(type(layer).__name__ == "DepthwiseConv2D" for layer in dscnn.layers)
    assert dscnn(np.zeros((2, *shape), np.float32)).shape == (2, 10)


@pytest.mark.parametrize("architecture", ["mobilenetv2", "mobilenetv3small"])
def test_a_mobilenet_is_one_flat_model_taking_pixels_in_0_1_that_it_normalises_itself(architecture):
    model = build_model(architecture, (32, 32, 3), 3, width=32)
    assert not any(isinstance(layer, keras.Model) for layer in model.layers)  # TFMOT sees every layer
    normalize = model.get_layer(NORMALIZE)
    np.testing.assert_allclose(normalize(np.array([[0.0, 0.5, 1.0]], np.float32)), [[-1.0, 0.0, 1.0]])
    assert any(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)
    probabilities = model(np.random.default_rng(0).random((2, 32, 32, 3), np.float32)).numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_alpha_scales_a_mobilenet():
    narrow = build_model("mobilenetv3small", (32, 32, 3), 3, width=32, alpha=0.35)
    wide = build_model("mobilenetv3small", (32, 32, 3), 3, width=32, alpha=1.0)
    assert wide.count_params() > 4 * narrow.count_params()
