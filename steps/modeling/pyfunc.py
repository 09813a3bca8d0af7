"""Predictions of any logged model through MLflow's pyfunc flavor: Keras and LiteRT deployables alike."""

from __future__ import annotations

from typing import Callable

import mlflow
import numpy as np


def probability_function(model_uri_or_path: str) -> Callable[[np.ndarray], np.ndarray]:
    """The model at an MLflow URI or in a downloaded folder, loaded once, as a function images -> probabilities."""
    model = mlflow.pyfunc.load_model(model_uri_or_path)
    return lambda x: np.asarray(model.predict(np.asarray(x, np.float32)))


def predict_classes(model_uri_or_path: str, x: np.ndarray) -> np.ndarray:
    """Predicted class per sample of the model at an MLflow URI or in a downloaded folder."""
    return probability_function(model_uri_or_path)(x).argmax(axis=1)
