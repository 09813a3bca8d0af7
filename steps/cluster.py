"""`cluster` entry point: TFMOT weight clustering (k-means++ centroids) with fine-tuning.

Each kernel keeps at most `n_clusters` distinct values, so after quantization
its bytes repeat and compress well. With `preserve_sparsity` a pruned parent's
zeros stay zeros (sparsity-preserving clustering), so pruning and clustering
add up.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlflow
import numpy as np
import tf_keras as keras
from tensorflow_model_optimization.python.core.clustering.keras.cluster import strip_clustering
from tensorflow_model_optimization.python.core.clustering.keras.cluster_config import CentroidInitialization
from tensorflow_model_optimization.python.core.clustering.keras.experimental import cluster as experimental_cluster

from steps.architectures import kernel_sparsity
from steps.config import parse_config, run_cli, setting
from steps.convert import to_tflite
from steps.data import Dataset, load_dataset
from steps.tracking import EpochLogger
from steps.variants import (
    FineTuneConfig,
    derived_variant,
    fine_tune,
    independent_copy,
    load_parent,
    log_variant,
    start_variant_run,
)

CLUSTERABLE_LAYERS = (keras.layers.Conv2D, keras.layers.Dense)


@dataclass(frozen=True)
class ClusterConfig(FineTuneConfig):
    """Cluster a Keras model's kernels to n_clusters shared values and fine-tune it."""

    learning_rate: float = setting(0.0001, "fine-tuning step size (Adam); small, so centroids settle")
    n_clusters: int = setting(16, "distinct values per kernel, >= 2")
    preserve_sparsity: bool = setting(True, "keep a pruned parent's zeros (sparsity-preserving clustering)")

    def __post_init__(self):
        super().__post_init__()
        if self.n_clusters < 2:
            raise ValueError(
                f"n_clusters must be >= 2 (one value per kernel cannot represent it), got {self.n_clusters}"
            )


@dataclass
class ClusteredModel:
    model: keras.Model  # clustering wrappers stripped
    unique_values: dict[str, int]  # distinct kernel values per clustered layer


def cluster_model(parent: keras.Model, data: Dataset, config: ClusterConfig, callbacks=()) -> ClusteredModel:
    """Clustered and fine-tuned copy of `parent` (left untouched)."""

    def wrap(layer):
        if not isinstance(layer, CLUSTERABLE_LAYERS):
            return layer
        return experimental_cluster.cluster_weights(
            layer,
            number_of_clusters=config.n_clusters,
            cluster_centroids_init=CentroidInitialization.KMEANS_PLUS_PLUS,
            preserve_sparsity=config.preserve_sparsity,
        )

    wrapped = keras.models.clone_model(independent_copy(parent), clone_function=wrap)
    fine_tune(wrapped, data, config, callbacks)
    model = strip_clustering(wrapped)
    unique = {
        layer.name: int(np.unique(layer.kernel.numpy()).size)
        for layer in model.layers
        if isinstance(layer, CLUSTERABLE_LAYERS)
    }
    return ClusteredModel(model, unique)


def main(argv: list[str] | None = None) -> None:
    config = parse_config(ClusterConfig, argv)
    data = load_dataset(config.dataset, image_size=config.image_size)
    with mlflow.start_run():
        parent = load_parent(config.model_uri, data)
        variant = derived_variant(parent.variant, f"c{config.n_clusters}")
        recipe = {
            "n_clusters": config.n_clusters,
            "preserve_sparsity": config.preserve_sparsity,
            "epochs": config.epochs,
        }
        start_variant_run("cluster", variant, parent, config, data, **recipe)
        clustered = cluster_model(parent.model, data, config, callbacks=(EpochLogger(),))
        mlflow.log_table(
            {"layer": list(clustered.unique_values), "unique_values": list(clustered.unique_values.values())},
            "unique_values_per_layer.json",
        )
        log_variant(
            "cluster", clustered.model, to_tflite(clustered.model), data, parent, kernel_sparsity(clustered.model)
        )


if __name__ == "__main__":
    run_cli("cluster", main)
