"""The architectures: the depthwise-separable cnn is a fraction of the cnn and classifies any image size."""

from __future__ import annotations

import numpy as np
import pytest

from steps.modeling.architectures import build_model


@pytest.mark.parametrize("shape", [(8, 8, 1), (28, 28, 3)])
def test_the_depthwise_separable_cnn_is_a_fraction_of_the_cnn_and_classifies_any_image_size(shape):
    dscnn, cnn = build_model("dscnn", shape, 10, width=32), build_model("cnn", shape, 10, width=32)
    assert dscnn.count_params() < cnn.count_params() / 10
    assert any(type(layer).__name__ == "DepthwiseConv2D" for layer in dscnn.layers)
    assert dscnn(np.zeros((2, *shape), np.float32)).shape == (2, 10)
