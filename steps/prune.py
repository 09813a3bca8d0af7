"""`prune` entry point: TFMOT magnitude pruning of a parent Keras model, with fine-tuning.

The work is `steps.compress.compression.prune_model` (see there for the schedule and
the 2:4 structure); this module parses, checks the data, and logs the variant.
"""

from __future__ import annotations

import mlflow

from steps import contract
from steps.parameters import parse_config, run_cli
from steps.release.lineage import checked_inputs
from steps.release.tracking import log_epoch, step_run
from steps.settings import PruneConfig


def main(argv: list[str] | None = None) -> None:
    config = parse_config(PruneConfig, argv)
    data = checked_inputs(config.dataset, config.image_size, config.model_uri, "model_uri")
    from steps.compress.compression import M_BY_N, prune_model
    from steps.compress.variants import load_parent, log_variant, start_variant_run
    from steps.modeling.architectures import kernel_sparsity
    from steps.modeling.convert import to_tflite
    from steps.modeling.training import epoch_callback

    parent = load_parent(config.model_uri, data, robustness=config.robustness)
    with step_run(contract.PRUNE):
        recipe = {"target_sparsity": config.target_sparsity, "structure": config.structure, "epochs": config.epochs}
        if config.per_layer is not None:
            recipe["layer_sparsity"] = config.per_layer
        variant = start_variant_run(contract.PRUNE, config.variant_suffix, parent, config, data, **recipe)
        callbacks = (epoch_callback(log_epoch),)
        pruned = prune_model(parent.model, data, config, callbacks, layer_sparsity=config.per_layer)
        if pruned.left_dense:
            print(f"prune: left dense (input channels not a multiple of {M_BY_N[1]}): {', '.join(pruned.left_dense)}")
        mlflow.log_table(
            {
                "layer": list(pruned.layer_sparsity),
                "sparsity": list(pruned.layer_sparsity.values()),
                "pruned": [name not in pruned.left_dense for name in pruned.layer_sparsity],
            },
            "sparsity_per_layer.json",
        )
        tflite = to_tflite(pruned.model)
        log_variant(variant, pruned.model, tflite, data, parent, kernel_sparsity(pruned.model), config.robustness)


if __name__ == "__main__":
    run_cli(contract.PRUNE, main)
