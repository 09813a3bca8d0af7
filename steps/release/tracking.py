"""MLflow logging shared by the stages: the step's run, its settings, data set, deployable and metrics.

Logging only (no TensorFlow, no registry): the run of a step lands in the
`rtdeploy` experiment unless the user chose one, is named after what it is,
and its experiment is marked as model training, so MLflow's UI opens on the
runs table instead of the GenAI overview.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
from importlib.metadata import version
from pathlib import Path

import mlflow
import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.types.schema import Schema, TensorSpec
from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME

from steps import contract
from steps.datasets.data import Dataset
from steps.modeling import litert_model, litert_runtime
from steps.modeling.measure import Baseline, DeployableMeasurement, measure_deployable, variant_metrics

# What a LiteRT deployable needs at serving time: no tensorflow.
LITERT_REQUIREMENTS = [f"{name}=={version(name)}" for name in ("mlflow", "ai-edge-litert", "numpy", "pandas")]
INPUT_EXAMPLE_SIZE = 2
# Set by `mlflow run` (the run to resume, or where to put it) or by the user: then the experiment is theirs.
CHOSEN_EXPERIMENT = ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID")


@contextlib.contextmanager
def step_run(step: str, experiment: str = contract.EXPERIMENT):
    """The active run of one step, named and tagged after it (a variant step renames it after its variant)."""
    chosen = any(os.environ.get(name) for name in CHOSEN_EXPERIMENT)
    with mlflow.start_run(experiment_id=None if chosen else experiment_id(experiment), run_name=step) as run:
        mlflow.set_tag(contract.TAG_STEP, step)
        mark_as_model_training(run.info.experiment_id)
        yield run


def check_store() -> None:
    """One cheap request, so a store that refuses the credentials or does not answer is told before heavy work."""
    mlflow.MlflowClient().search_experiments(max_results=1)


def experiment_id(name: str) -> str:
    """The experiment's id, created if need be. Not mlflow.set_experiment: that also sets MLFLOW_EXPERIMENT_ID
    in this process's environment, which would outlive a change of tracking store."""
    client = mlflow.MlflowClient()
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(name)
    except MlflowException:  # another process created it meanwhile
        return client.get_experiment_by_name(name).experiment_id


def mark_as_model_training(experiment_id: str) -> None:
    """Tag the experiment's kind unless someone already did (a user's choice stays)."""
    client = mlflow.MlflowClient()
    if contract.EXPERIMENT_KIND_TAG not in client.get_experiment(experiment_id).tags:
        client.set_experiment_tag(experiment_id, contract.EXPERIMENT_KIND_TAG, contract.EXPERIMENT_KIND)


def set_variant_tags(variant: str, parent_model: str = "", *, name_run: bool = False) -> None:
    """What the run's model is and what it came from; `name_run` names the run after the variant."""
    tags = {contract.TAG_VARIANT: variant} if variant else {}
    if parent_model:
        tags[contract.TAG_PARENT_MODEL] = parent_model
    if name_run and variant:
        tags[MLFLOW_RUN_NAME] = variant
    mlflow.set_tags(tags)


def active_run_id() -> str:
    return mlflow.active_run().info.run_id


def log_config(config) -> None:
    """Log every setting as a param, skipping those `mlflow run` already logged.

    `mlflow run` logs the entry point's parameters as the strings it was given
    ("0.0010"); logging the parsed value ("0.001") again would be an error.
    """
    existing = mlflow.get_run(active_run_id()).data.params
    mlflow.log_params({k: v for k, v in dataclasses.asdict(config).items() if k not in existing})


def log_dataset(data: Dataset) -> None:
    """Record which data (name, source, digest per split) the run used, for lineage."""
    for context, x, y in (
        ("train", data.x_train, data.y_train),
        ("validation", data.x_val, data.y_val),
        ("test", data.x_test, data.y_test),
    ):
        try:
            dataset = mlflow.data.from_numpy(x, targets=y, source=data.source, name=data.name)
        except MlflowException:  # no resolver for runs:/ artifacts (an update's data, named by the dataset param)
            dataset = mlflow.data.from_numpy(x, targets=y, name=data.name)
        mlflow.log_input(dataset, context=context)
    mlflow.set_tag(contract.TAG_DATASET_DIGEST, data.digest)


def log_epoch(epoch: int, logs: dict | None) -> None:
    """One epoch of a Keras history as stepped metrics (the learning curves)."""
    logs = logs or {}
    mlflow.log_metrics(
        {key: float(logs[name]) for name, key in contract.EPOCH_METRICS.items() if name in logs}, step=epoch
    )


def model_signature(data: Dataset) -> ModelSignature:
    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, *data.input_shape))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, data.n_classes))]),
    )


def example_input(data: Dataset) -> np.ndarray:
    return data.x_test[:INPUT_EXAMPLE_SIZE]


def log_litert_model(tflite_path: str | Path, data: Dataset) -> str:
    """Log a .tflite file as the LiteRT pyfunc deployable; returns its runs:/ URI."""
    mlflow.pyfunc.log_model(
        name=contract.LITERT_MODEL,
        python_model=litert_model.__file__,
        artifacts={litert_model.TFLITE_ARTIFACT: str(tflite_path)},
        code_paths=[litert_runtime.__file__],  # imported by the model's code, beside it in the deployable
        signature=model_signature(data),
        input_example=example_input(data),
        pip_requirements=LITERT_REQUIREMENTS,
        metadata={contract.CLASS_NAMES: list(data.class_names)},  # the server answers with labels, not indices
    )
    return f"runs:/{active_run_id()}/{contract.LITERT_MODEL}"


def log_deployable(
    tflite: bytes, data: Dataset, baseline: Baseline | None, *, sparsity: float, params: int, robustness: str
) -> tuple[dict[str, float], DeployableMeasurement]:
    """Measure a .tflite deployable (under the corruption suite in mode `robustness`), log it and its metric
    set, and every kind and level of its robustness as robustness.json; returns the metrics and measurement.

    With no baseline the deployable is the baseline itself (the float32 export
    of a training run): accuracy drop 0, compression ratio 1.
    """
    measured = measure_deployable(tflite, data, robustness)
    metrics = variant_metrics(measured, baseline or Baseline.of(measured), sparsity=sparsity, params=params)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.tflite"
        path.write_bytes(tflite)
        log_litert_model(path, data)
    mlflow.log_metrics(metrics)
    mlflow.log_dict({"predicted": measured.predictions.tolist()}, contract.TEST_PREDICTIONS_FILE)
    if measured.robustness is not None:
        splits = {"test": measured.robustness.as_dict(), "validation": measured.val_robustness.as_dict()}
        mlflow.log_dict(splits, contract.ROBUSTNESS_FILE)
    return metrics, measured
