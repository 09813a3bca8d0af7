"""MLflow at the edges: logging data sets, models, deployables and step tags the same way in every step."""

from __future__ import annotations

import dataclasses
import tempfile
from importlib.metadata import version
from pathlib import Path

import mlflow
import numpy as np
import tf_keras as keras
from mlflow.models import ModelSignature
from mlflow.types.schema import Schema, TensorSpec

from steps import contract, litert_model, litert_runtime
from steps.data import Dataset
from steps.measure import DeployableMeasurement, measure_deployable, variant_metrics
from steps.selection import VariantRow

# What a LiteRT deployable needs at serving time: no tensorflow.
LITERT_REQUIREMENTS = [f"{name}=={version(name)}" for name in ("mlflow", "ai-edge-litert", "numpy", "pandas")]
INPUT_EXAMPLE_SIZE = 2


class EpochLogger(keras.callbacks.Callback):
    """Log the learning curves to the active MLflow run, one step per epoch."""

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        mlflow.log_metrics(
            {key: float(logs[name]) for name, key in contract.EPOCH_METRICS.items() if name in logs}, step=epoch
        )


def set_step_tags(step: str, variant: str, parent_model: str = "") -> None:
    tags = {contract.TAG_STEP: step}
    if variant:
        tags[contract.TAG_VARIANT] = variant
    if parent_model:
        tags[contract.TAG_PARENT_MODEL] = parent_model
    mlflow.set_tags(tags)


def log_config(config) -> None:
    """Log every setting as a param, skipping those `mlflow run` already logged.

    `mlflow run` logs the entry point's parameters as the strings it was given
    ("0.0010"); logging the parsed value ("0.001") again would be an error.
    """
    existing = mlflow.get_run(mlflow.active_run().info.run_id).data.params
    mlflow.log_params({k: v for k, v in dataclasses.asdict(config).items() if k not in existing})


def log_dataset(data: Dataset) -> None:
    """Record which data (name, source, digest per split) the run used, for lineage."""
    for context, x, y in (
        ("train", data.x_train, data.y_train),
        ("validation", data.x_val, data.y_val),
        ("test", data.x_test, data.y_test),
    ):
        dataset = mlflow.data.from_numpy(x, targets=y, source=data.source, name=data.name)
        mlflow.log_input(dataset, context=context)
    mlflow.set_tag(contract.TAG_DATASET_DIGEST, data.digest)


def _signature(data: Dataset) -> ModelSignature:
    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, *data.input_shape))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, data.n_classes))]),
    )


def log_keras_model(model: keras.Model, data: Dataset) -> str:
    """Log a Keras model (a parent for later steps); returns its runs:/ URI."""
    mlflow.tensorflow.log_model(
        model,
        name=contract.KERAS_MODEL,
        signature=_signature(data),
        input_example=data.x_test[:INPUT_EXAMPLE_SIZE],
    )
    return f"runs:/{mlflow.active_run().info.run_id}/{contract.KERAS_MODEL}"


def log_litert_model(tflite_path: str | Path, data: Dataset) -> str:
    """Log a .tflite file as the LiteRT pyfunc deployable; returns its runs:/ URI."""
    mlflow.pyfunc.log_model(
        name=contract.LITERT_MODEL,
        python_model=litert_model.__file__,
        artifacts={litert_model.TFLITE_ARTIFACT: str(tflite_path)},
        code_paths=[litert_runtime.__file__],  # imported by the model's code, beside it in the deployable
        signature=_signature(data),
        input_example=data.x_test[:INPUT_EXAMPLE_SIZE],
        pip_requirements=LITERT_REQUIREMENTS,
        metadata={contract.CLASS_NAMES: list(data.class_names)},  # the server answers with labels, not indices
    )
    return f"runs:/{mlflow.active_run().info.run_id}/{contract.LITERT_MODEL}"


def log_deployable(
    tflite: bytes,
    data: Dataset,
    *,
    sparsity: float,
    params: int,
    baseline_accuracy: float | None = None,
    baseline_gzip_bytes: int | None = None,
) -> tuple[dict[str, float], DeployableMeasurement]:
    """Measure a .tflite deployable, log it and its metric set; returns both.

    Without a baseline the deployable is the baseline itself (the float32
    export of a training run): accuracy drop 0, compression ratio 1.
    """
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.tflite"
        path.write_bytes(tflite)
        measured = measure_deployable(tflite, data.x_test, data.y_test)
        metrics = variant_metrics(
            measured,
            baseline_accuracy=measured.accuracy if baseline_accuracy is None else baseline_accuracy,
            baseline_gzip_bytes=measured.size_gzip_bytes if baseline_gzip_bytes is None else baseline_gzip_bytes,
            sparsity=sparsity,
            params=params,
        )
        log_litert_model(path, data)
    mlflow.log_metrics(metrics)
    return metrics, measured


class ModelLoadError(ValueError):
    """A model reference that does not give a usable Keras model; the message says why."""


def load_keras_model(reference: str) -> keras.Model:
    """A tf_keras model from an MLflow model URI (runs:/, models:/, ...), a .keras/.h5 file or a SavedModel folder."""
    try:
        if "://" in reference or reference.startswith(("runs:/", "models:/")):
            model = mlflow.tensorflow.load_model(reference)
        else:
            path = Path(reference).expanduser()
            if not path.exists():
                raise ModelLoadError(f"model file {reference!r} does not exist")
            model = keras.models.load_model(path, compile=False)
    except ModelLoadError:
        raise
    except Exception as error:  # MLflow, h5py and SavedModel loaders each raise their own types
        raise ModelLoadError(
            f"cannot load a Keras model from {reference!r} ({type(error).__name__}: {error}); give the URI of a "
            f"model logged by train/prune/cluster (runs:/<run_id>/{contract.KERAS_MODEL}), or a .keras/.h5 "
            "file or SavedModel folder saved with tf_keras"
        ) from error
    if not isinstance(model, keras.Model):
        raise ModelLoadError(f"{reference!r} is a {type(model).__name__}, not a tf_keras model")
    return model


def variant_row(run_id: str) -> VariantRow:
    """A variant run as the selection functions see it."""
    run = mlflow.get_run(run_id)
    return VariantRow(run_id, run.data.tags[contract.TAG_STEP], run.data.tags[contract.TAG_VARIANT], run.data.metrics)


def variant_rows_of_pipeline(pipeline_run_id: str) -> list[VariantRow]:
    """Every variant a main run made or reused, found through its step-run tags (register runs are no variant)."""
    prefix = contract.TAG_STEP_RUN.format(step="")
    tags = mlflow.get_run(pipeline_run_id).data.tags
    runs = [mlflow.get_run(run_id) for key, run_id in sorted(tags.items()) if key.startswith(prefix)]
    if not runs:
        raise ValueError(f"run {pipeline_run_id} is not a main (pipeline) run: it has no step runs")
    return [variant_row(run.info.run_id) for run in runs if contract.TAG_VARIANT in run.data.tags]
