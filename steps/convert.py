"""Keras model -> .tflite flatbuffer.

TF 2.21's `TFLiteConverter.from_keras_model` fails on tf_keras models
('SymbolicTensor' object has no attribute 'numpy'), so conversion goes through
a concrete function with a dynamic batch axis; the server can then batch.
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras as keras


def to_tflite(model: keras.Model) -> bytes:
    """A float32 .tflite flatbuffer of `model`, batch axis left dynamic."""
    input_spec = tf.TensorSpec([None, *model.input_shape[1:]], tf.float32, name="images")
    concrete = tf.function(lambda images: model(images, training=False)).get_concrete_function(input_spec)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], model)
    return converter.convert()
