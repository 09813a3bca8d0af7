"""Predictions of any logged model through MLflow's pyfunc flavor: Keras and LiteRT deployables alike."""

from __future__ import annotations

import mlflow
import numpy as np


def predict_classes(model_uri_or_path: str, x: np.ndarray) -> np.ndarray:
    """Predicted class per sample of the model at an MLflow URI or in a downloaded folder."""
    model = mlflow.pyfunc.load_model(model_uri_or_path)
    return np.asarray(model.predict(x.astype(np.float32))).argmax(axis=1)
