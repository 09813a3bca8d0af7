"""tf_keras models in and out: built or loaded (MLflow model URI or file), checked against the data, logged."""

from __future__ import annotations

from pathlib import Path

import mlflow
import tf_keras as keras

from steps import contract
from steps.datasets.data import Dataset
from steps.modeling.architectures import build_model
from steps.modeling.flatten import flattened, nested_models
from steps.modeling.training import seed_everything
from steps.parameters import UsageError, is_missing
from steps.release.lineage import is_model_uri
from steps.release.tracking import example_input, model_signature
from steps.settings import TrainConfig


class ModelLoadError(UsageError):
    """A model reference that does not give a usable Keras model; the message says why."""


def load_keras_model(reference: str) -> keras.Model:
    """A tf_keras model from an MLflow model URI (runs:/, models:/, ...), a .keras/.h5 file or a SavedModel folder."""
    try:
        if is_model_uri(reference):
            model = mlflow.tensorflow.load_model(reference)
        else:
            model = keras.models.load_model(Path(reference).expanduser(), compile=False)
    except Exception as error:  # MLflow, h5py and SavedModel loaders each raise their own types
        if getattr(error, "error_code", None) and not is_missing(error):  # the store refused or did not answer
            raise
        raise ModelLoadError(
            f"cannot load a Keras model from {reference!r} ({type(error).__name__}: {error}); give the URI of a "
            f"model logged by train/prune/cluster (runs:/<run_id>/{contract.KERAS_MODEL}), or a .keras/.h5 "
            "file or SavedModel folder saved with tf_keras"
        ) from error
    if not isinstance(model, keras.Model):
        raise ModelLoadError(f"{reference!r} is a {type(model).__name__}, not a tf_keras model")
    nested = [inner.name for inner in nested_models(model)]
    model = flattened(model)
    if nested and not nested_models(model):
        print(f"flattened the models nested in {reference!r} ({', '.join(nested)}), so compression sees every layer")
    return model


def require_fit(model: keras.Model, data: Dataset, what: str) -> None:
    """The model must take the data's images and predict its classes; the message names both."""
    if tuple(model.input_shape[1:]) != data.input_shape:
        raise ModelLoadError(
            f"{what} takes inputs {tuple(model.input_shape[1:])} but dataset {data.name!r} has {data.input_shape}; "
            "use a dataset of that shape (image_size for folders) or another model"
        )
    if model.output_shape[-1] != data.n_classes:
        raise ModelLoadError(
            f"{what} predicts {model.output_shape[-1]} classes but dataset {data.name!r} has {data.n_classes}"
        )


def initial_model(config: TrainConfig, data: Dataset) -> keras.Model:
    """What `train` fits: the base model checked against the data, or a new model of `architecture`."""
    if not config.base_model:
        seed_everything(config.seed)  # the initial weights are drawn too
        return build_model(config.architecture, data.input_shape, data.n_classes, config.width, config.alpha)
    model = load_keras_model(config.base_model)
    require_fit(model, data, "base_model")
    return model


def log_keras_model(model: keras.Model, data: Dataset) -> str:
    """Log a Keras model (a parent for later steps) on the active run; returns its runs:/ URI."""
    mlflow.tensorflow.log_model(
        model, name=contract.KERAS_MODEL, signature=model_signature(data), input_example=example_input(data)
    )
    return f"runs:/{mlflow.active_run().info.run_id}/{contract.KERAS_MODEL}"
