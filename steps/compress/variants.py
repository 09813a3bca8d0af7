"""What prune, cluster and quantize share: the parent model with its lineage, and logging the variant.

Each starts from a parent Keras model given by URI. The parent's run tells
what the variant is compared with (the float32 deployable of the training run
it descends from) and which compression steps made the parent (the recipe),
so a variant's run records its whole lineage.
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib.pyplot as plt
import mlflow
import numpy as np
import tf_keras as keras

from steps import contract
from steps.compress.forgetting import Forgetting, what_compression_forgot
from steps.datasets.data import Dataset
from steps.modeling.architectures import predicted_classes
from steps.modeling.convert import to_tflite
from steps.modeling.keras_io import load_keras_model, log_keras_model, require_fit
from steps.modeling.measure import Baseline, measure_deployable
from steps.parameters import UsageError
from steps.release.lineage import baseline_of, recipe_of, set_lineage_tags, source_run_id, test_predictions_of
from steps.release.tracking import log_config, log_dataset, log_deployable, set_variant_tags
from steps.reports.figures import flipped_figure
from steps.settings import FineTuneConfig

EXTERNAL_VARIANT = "external"  # a parent that no rtdeploy run made (a model file)


@dataclass
class Parent:
    uri: str
    model: keras.Model
    variant: str  # "float32", "pruned80", ... or "external"
    recipe: list[dict]  # compression steps that made it, oldest first
    baseline: Baseline
    baseline_predictions: np.ndarray | None  # the baseline deployable's class per test sample (None: not logged)

    def predictions(self, x: np.ndarray) -> np.ndarray:
        return predicted_classes(self.model, x)


def derived_variant(parent_variant: str, suffix: str) -> str:
    """'float32' + 'int8' -> 'int8'; 'pruned80' + 'c16' -> 'pruned80-c16'."""
    if parent_variant in (contract.FLOAT32_VARIANT, EXTERNAL_VARIANT):
        return suffix
    return f"{parent_variant}-{suffix}"


def load_parent(uri: str, data: Dataset, *, robustness: str) -> Parent:
    """The parent model with its lineage; fails if it does not fit the data or came from other data. A parent no
    rtdeploy step made is its own baseline, measured here (its robustness in mode `robustness`)."""
    model = load_keras_model(uri)
    require_fit(model, data, f"model_uri {uri!r}")
    run_id = source_run_id(uri)
    tags = mlflow.get_run(run_id).data.tags if run_id else {}
    baseline = baseline_of(tags)
    if baseline is None:  # not made by an rtdeploy step: it is its own baseline
        measured = measure_deployable(to_tflite(model), data, robustness)
        return Parent(uri, model, EXTERNAL_VARIANT, [], Baseline.of(measured), measured.predictions)
    digest = tags.get(contract.TAG_DATASET_DIGEST)
    if digest != data.digest:
        raise UsageError(
            f"model_uri {uri!r} was trained on data with digest {digest} but dataset {data.name!r} has digest "
            f"{data.digest}; pass the dataset (and image_size) of its train run so accuracies compare"
        )
    predictions = test_predictions_of(baseline.run_id) if baseline.run_id else None
    return Parent(uri, model, tags.get(contract.TAG_VARIANT, EXTERNAL_VARIANT), recipe_of(tags), baseline, predictions)


def start_variant_run(step: str, suffix: str, parent: Parent, config: FineTuneConfig, data: Dataset, **recipe) -> str:
    """Name, tag and log the active run as the variant `step` makes from `parent`; returns the variant name."""
    variant = derived_variant(parent.variant, suffix)
    set_variant_tags(variant, parent.uri, name_run=True)
    set_lineage_tags(parent.baseline, [*parent.recipe, {"step": step, **recipe}])
    log_config(config)
    log_dataset(data)
    return variant


def log_variant(
    variant: str,
    keras_model: keras.Model | None,
    tflite: bytes,
    data: Dataset,
    parent: Parent,
    sparsity: float,
    robustness: str,
) -> dict[str, float]:
    """Log the variant's Keras model (if it is a parent for later steps) and its deployable with all metrics
    (robustness: the corruption suite's mode)."""
    if keras_model is not None:
        log_keras_model(keras_model, data)
    params = (keras_model or parent.model).count_params()
    metrics, measured = log_deployable(
        tflite, data, parent.baseline, sparsity=sparsity, params=params, robustness=robustness
    )
    metrics[contract.AGREEMENT] = float((measured.predictions == parent.predictions(data.x_test)).mean())
    mlflow.log_metric(contract.AGREEMENT, metrics[contract.AGREEMENT])
    forgot = ""
    if parent.baseline_predictions is not None:
        forgetting = what_compression_forgot(
            parent.baseline_predictions, measured.predictions, data.y_test, data.class_names
        )
        metrics[contract.FLIP_RATE] = forgetting.flip_rate
        log_forgetting(forgetting, data, parent.baseline_predictions, measured.predictions)
        forgot = f"; against the float baseline: {forgetting.summary()}"
    print(
        f"{variant}: accuracy {measured.accuracy} (drop {metrics[contract.ACCURACY_DROP]:+.4f}; validation drop "
        f"{metrics[contract.VAL_ACCURACY_DROP]:+.4f}), {metrics[contract.SIZE_GZIP_BYTES]:,} B gzipped "
        f"({metrics[contract.COMPRESSION_RATIO]:.1f}x smaller), sparsity {sparsity:.3f}, "
        f"p50 {metrics[contract.LATENCY_P50_MS]:.3f} ms, agreement with parent {metrics[contract.AGREEMENT]:.4f}"
        f"{robust_summary(metrics)}{forgot}"
    )
    return metrics


def robust_summary(metrics: dict[str, float]) -> str:
    if contract.ROBUST_ACCURACY not in metrics:
        return ""
    drop = metrics.get(contract.ROBUST_ACCURACY_DROP)
    return f", robust accuracy {metrics[contract.ROBUST_ACCURACY]:.4f}" + (
        f" (drop {drop:+.4f})" if drop is not None else ""
    )


def log_forgetting(
    forgetting: Forgetting, data: Dataset, baseline_predictions: np.ndarray, predictions: np.ndarray
) -> None:
    """flip_rate, the per-class table and the flipped images, on the active run."""
    mlflow.log_metric(contract.FLIP_RATE, forgetting.flip_rate)
    mlflow.log_table(forgetting.per_class, contract.FORGETTING_TABLE)
    if len(forgetting.flipped):
        figure = flipped_figure(forgetting.flipped, data, baseline_predictions, predictions)
        mlflow.log_figure(figure, contract.FLIPPED_FIGURE)
        plt.close(figure)  # a search logs one per trial
