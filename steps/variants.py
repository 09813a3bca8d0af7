"""What every derived variant shares: its parent model, lineage, float baseline and fine-tuning.

prune, cluster and quantize each start from a parent Keras model given by URI.
The parent's run tells what the variant is compared with (the float32
deployable of the training run it descends from) and which compression steps
made the parent (the recipe), so a variant's run records its whole lineage.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import mlflow
import numpy as np
import tf_keras as keras

from steps import contract
from steps.architectures import predicted_classes
from steps.config import require_positive, setting
from steps.convert import to_tflite
from steps.data import Dataset
from steps.litert_runtime import LiteRTClassifier
from steps.measure import sizes
from steps.tracking import (
    ModelLoadError,
    load_keras_model,
    log_config,
    log_dataset,
    log_deployable,
    log_keras_model,
    set_step_tags,
)

EXTERNAL_VARIANT = "external"  # a parent that no rtdeploy run made (a model file)


@dataclass(frozen=True)
class FineTuneConfig:
    """Settings every derived variant shares: the parent, the data and the fine-tuning run."""

    model_uri: str = setting("", "parent Keras model: runs:/<run_id>/keras_model, models:/<name>@<alias>, or a file")
    dataset: str = setting("digits", "the parent's data set: 'digits', a .npz file or an image folder")
    image_size: int = setting(28, "side in pixels that images of an image folder are resized to")
    epochs: int = setting(4, "fine-tuning epochs")
    learning_rate: float = setting(0.0005, "fine-tuning step size (Adam)")
    batch_size: int = setting(32, "samples per gradient step")
    seed: int = setting(42, "seed for weight init and shuffling")

    def __post_init__(self):
        if not self.model_uri:
            raise ValueError(
                f"model_uri is required: the parent Keras model, e.g. runs:/<train_run_id>/{contract.KERAS_MODEL}"
            )
        for name in ("epochs", "learning_rate", "batch_size", "image_size"):
            require_positive(name, getattr(self, name))


@dataclass(frozen=True)
class Baseline:
    run_id: str  # the train run ("" when the parent is a file: then the parent itself is the baseline)
    accuracy: float
    gzip_bytes: int


@dataclass
class Parent:
    uri: str
    model: keras.Model
    variant: str  # "float32", "pruned80", ... or "external"
    recipe: list[dict]  # compression steps that made it, oldest first
    baseline: Baseline

    def predictions(self, x: np.ndarray) -> np.ndarray:
        return predicted_classes(self.model, x)


def derived_variant(parent_variant: str, suffix: str) -> str:
    """'float32' + 'int8' -> 'int8'; 'pruned80' + 'c16' -> 'pruned80-c16'."""
    if parent_variant in (contract.FLOAT32_VARIANT, EXTERNAL_VARIANT):
        return suffix
    return f"{parent_variant}-{suffix}"


def independent_copy(model: keras.Model) -> keras.Model:
    """A copy sharing no layer or weight with `model`.

    TFMOT wraps the very layer objects of the model it is given, so deriving a
    variant from the parent itself would change the parent's weights.
    """
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def load_parent(uri: str, data: Dataset) -> Parent:
    """The parent model with its lineage; fails if it does not fit the data or came from other data."""
    model = load_keras_model(uri)
    if tuple(model.input_shape[1:]) != data.input_shape or model.output_shape[-1] != data.n_classes:
        raise ModelLoadError(
            f"model_uri {uri!r} maps {tuple(model.input_shape[1:])} to {model.output_shape[-1]} classes but dataset "
            f"{data.name!r} has {data.input_shape} images of {data.n_classes} classes; pass the parent's dataset"
        )
    run_id = source_run_id(uri)
    tags = mlflow.get_run(run_id).data.tags if run_id else {}
    if contract.TAG_BASELINE_ACCURACY not in tags:  # not made by an rtdeploy step: it is its own baseline
        return Parent(uri, model, EXTERNAL_VARIANT, [], _measure_baseline(model, data))
    digest = tags.get(contract.TAG_DATASET_DIGEST)
    if digest != data.digest:
        raise ValueError(
            f"model_uri {uri!r} was trained on data with digest {digest} but dataset {data.name!r} has digest "
            f"{data.digest}; pass the dataset (and image_size) of its train run so accuracies compare"
        )
    baseline = Baseline(
        tags.get(contract.TAG_BASELINE_RUN, ""),
        float(tags[contract.TAG_BASELINE_ACCURACY]),
        int(tags[contract.TAG_BASELINE_GZIP_BYTES]),
    )
    recipe = json.loads(tags.get(contract.TAG_RECIPE, "[]"))
    return Parent(uri, model, tags.get(contract.TAG_VARIANT, EXTERNAL_VARIANT), recipe, baseline)


def source_run_id(uri: str) -> str | None:
    """The run that logged the model at `uri`, or None for a plain file."""
    if "://" not in uri and not uri.startswith(("runs:/", "models:/")):
        return None
    return mlflow.models.get_model_info(uri).run_id


def _measure_baseline(model: keras.Model, data: Dataset) -> Baseline:
    """For a parent with no rtdeploy run: its own float32 export is the baseline."""
    tflite = to_tflite(model)
    predictions = LiteRTClassifier(tflite).predict_proba(data.x_test).argmax(axis=1)
    return Baseline("", float((predictions == data.y_test).mean()), sizes(tflite)[1])


def set_lineage_tags(baseline: Baseline, recipe: list[dict]) -> None:
    """Tags that let any later step find this run's baseline and the steps that made it."""
    tags = {
        contract.TAG_BASELINE_ACCURACY: str(baseline.accuracy),
        contract.TAG_BASELINE_GZIP_BYTES: str(baseline.gzip_bytes),
        contract.TAG_RECIPE: json.dumps(recipe),
    }
    if baseline.run_id:
        tags[contract.TAG_BASELINE_RUN] = baseline.run_id
    mlflow.set_tags(tags)


def start_variant_run(step: str, variant: str, parent: Parent, config: FineTuneConfig, data: Dataset, **recipe) -> None:
    """Tag and log the active run as `variant`, made by `step` (settings `recipe`) from `parent`."""
    set_step_tags(step, variant, parent.uri)
    set_lineage_tags(parent.baseline, [*parent.recipe, {"step": step, **recipe}])
    log_config(config)
    log_dataset(data)


def fine_tune(model: keras.Model, data: Dataset, config: FineTuneConfig, callbacks=()) -> None:
    """A fixed number of epochs (schedules like pruning's must run to the end): no early stopping.

    `callbacks` may include an EpochLogger: the CLI passes one, plain calls log nothing.
    """
    keras.utils.set_random_seed(config.seed)
    model.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(
        data.x_train,
        data.y_train,
        validation_data=(data.x_val, data.y_val),
        epochs=config.epochs,
        batch_size=config.batch_size,
        callbacks=list(callbacks),
        verbose=2,
    )


def log_variant(
    step: str, keras_model: keras.Model | None, tflite: bytes, data: Dataset, parent: Parent, sparsity: float
) -> dict[str, float]:
    """Log the variant's Keras model (if it is a parent for later steps) and its deployable with all metrics."""
    params = (keras_model or parent.model).count_params()
    if keras_model is not None:
        log_keras_model(keras_model, data)
    metrics, measured = log_deployable(
        tflite,
        data,
        sparsity=sparsity,
        params=params,
        baseline_accuracy=parent.baseline.accuracy,
        baseline_gzip_bytes=parent.baseline.gzip_bytes,
    )
    metrics[contract.AGREEMENT] = float((measured.predictions == parent.predictions(data.x_test)).mean())
    mlflow.log_metric(contract.AGREEMENT, metrics[contract.AGREEMENT])
    variant = mlflow.get_run(mlflow.active_run().info.run_id).data.tags[contract.TAG_VARIANT]
    print(
        f"{step}: {variant}: accuracy {metrics[contract.ACCURACY]:.4f} (drop {metrics[contract.ACCURACY_DROP]:+.4f}), "
        f"{metrics[contract.SIZE_GZIP_BYTES]:,} B gzipped ({metrics[contract.COMPRESSION_RATIO]:.1f}x smaller), "
        f"sparsity {sparsity:.3f}, p50 {metrics[contract.LATENCY_P50_MS]:.3f} ms, "
        f"agreement with parent {metrics[contract.AGREEMENT]:.4f}"
    )
    return metrics
