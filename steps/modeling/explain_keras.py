"""Integrated gradients (Sundararajan et al., 2017) for a Keras model: where a float model exists, its
gradients give a finer map than occlusion's squares, and one that adds up: the attributions of all pixels sum to
the change of the class's probability from the baseline image (the image's mean, as occlusion fills) to the
image itself, up to the integral's discretisation. TensorFlow: never imported by the server.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tf_keras as keras

from steps.modeling.explain import Explanation

STEPS = 64  # points on the straight path from the baseline to the image (trapezoidal rule)


def integrated_gradients(model: keras.Model, image: np.ndarray, target: int | None = None) -> Explanation:
    """Attribution of each pixel (summed over channels, as occlusion's map) to the class `target` (default: the
    predicted one), on the path from the image's mean to the image."""
    image = np.asarray(image, np.float32)
    probabilities = model(image[np.newaxis], training=False).numpy()[0]
    target = int(probabilities.argmax()) if target is None else int(target)
    baseline = np.broadcast_to(image.mean(axis=(0, 1)), image.shape).astype(np.float32)
    alphas = np.linspace(0.0, 1.0, STEPS + 1, dtype=np.float32)[:, None, None, None]
    path = tf.constant(baseline + alphas * (image - baseline))
    with tf.GradientTape() as tape:
        tape.watch(path)
        scores = model(path, training=False)[:, target]
    gradients = tape.gradient(scores, path).numpy()
    average = (gradients[:-1] + gradients[1:]).mean(axis=0) / 2  # trapezoids
    attribution = ((image - baseline) * average).sum(axis=-1)
    saliency = np.repeat(attribution[..., np.newaxis], image.shape[-1], axis=-1)
    return Explanation(target, probabilities, saliency)
