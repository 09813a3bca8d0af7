"""`cluster` entry point: TFMOT weight clustering (k-means++ centroids) of a parent Keras model, with fine-tuning.

The work is `steps.compress.compression.cluster_model`; this module parses, checks the
data, and logs the variant.
"""

from __future__ import annotations

import mlflow

from steps import contract
from steps.parameters import parse_config, run_cli
from steps.release.lineage import checked_inputs
from steps.release.tracking import log_epoch, step_run
from steps.settings import ClusterConfig


def main(argv: list[str] | None = None) -> None:
    config = parse_config(ClusterConfig, argv)
    data = checked_inputs(config.dataset, config.image_size, config.model_uri, "model_uri")
    from steps.compress.compression import cluster_model
    from steps.compress.variants import load_parent, log_variant, start_variant_run
    from steps.modeling.architectures import kernel_sparsity
    from steps.modeling.convert import to_tflite
    from steps.modeling.training import epoch_callback

    parent = load_parent(config.model_uri, data, robustness=config.robustness)
    with step_run(contract.CLUSTER):
        recipe = {
            "n_clusters": config.n_clusters,
            "preserve_sparsity": config.preserve_sparsity,
            "epochs": config.epochs,
        }
        if config.per_layer is not None:
            recipe["layer_clusters"] = config.per_layer
        variant = start_variant_run(contract.CLUSTER, config.variant_suffix, parent, config, data, **recipe)
        callbacks = (epoch_callback(log_epoch),)
        clustered = cluster_model(parent.model, data, config, callbacks, layer_clusters=config.per_layer)
        mlflow.log_table(
            {"layer": list(clustered.unique_values), "unique_values": list(clustered.unique_values.values())},
            "unique_values_per_layer.json",
        )
        tflite = to_tflite(clustered.model)
        log_variant(variant, clustered.model, tflite, data, parent, kernel_sparsity(clustered.model), config.robustness)


if __name__ == "__main__":
    run_cli(contract.CLUSTER, main)
