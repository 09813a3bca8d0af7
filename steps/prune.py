"""`prune` entry point: TFMOT magnitude pruning of a parent Keras model, with fine-tuning.

Sparsity rises along a polynomial schedule to `target_sparsity` by 70% of the
fine-tuning steps; the rest lets accuracy recover at the final sparsity. With
`structure=2:4` every block of four consecutive input-channel weights keeps at
most two (the layout sparse hardware kernels use); layers whose input
channels are not a multiple of four cannot take it and stay dense.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import mlflow
import numpy as np
import tensorflow_model_optimization as tfmot
import tf_keras as keras

from steps.architectures import kernel_sparsity
from steps.config import parse_config, require_choice, run_cli, setting
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

STRUCTURES = ("unstructured", "2:4")
M_BY_N = (2, 4)  # zeros, block length
PRUNABLE_LAYERS = (keras.layers.Conv2D, keras.layers.Dense)
RAMP_SHARE = 0.7  # share of fine-tuning steps over which sparsity ramps up to the target
UPDATES_PER_EPOCH = 4  # mask updates per epoch: frequent enough that short runs reach the target


@dataclass(frozen=True)
class PruneConfig(FineTuneConfig):
    """Prune a Keras model's kernels to a target sparsity and fine-tune it."""

    epochs: int = setting(8, "fine-tuning epochs; sparsity reaches the target after 70% of them")
    target_sparsity: float = setting(0.8, "fraction of kernel weights set to zero, in [0, 1) (unstructured)")
    structure: str = setting("unstructured", f"{' or '.join(STRUCTURES)} (2 zeros in every 4 input-channel weights)")

    def __post_init__(self):
        super().__post_init__()
        require_choice("structure", self.structure, STRUCTURES)
        if not 0.0 <= self.target_sparsity < 1.0:
            raise ValueError(f"target_sparsity must be in [0, 1), got {self.target_sparsity}")

    @property
    def variant_suffix(self) -> str:
        return "pruned2:4" if self.structure == "2:4" else f"pruned{round(self.target_sparsity * 100)}"


@dataclass
class PrunedModel:
    model: keras.Model  # pruning wrappers stripped: a plain Keras model with zeros in its kernels
    layer_sparsity: dict[str, float]  # kernel sparsity of every prunable layer
    left_dense: list[str]  # layers that could not take the requested structure


def takes_m_by_n(layer: keras.layers.Layer) -> bool:
    """2:4 blocks run along input channels (TFLite layout), so their count must be a multiple of 4."""
    return layer.kernel.shape[-2] % M_BY_N[1] == 0


def pruning_schedule(n_train: int, config: PruneConfig) -> tfmot.sparsity.keras.PruningSchedule:
    steps_per_epoch = math.ceil(n_train / config.batch_size)
    frequency = max(1, steps_per_epoch // UPDATES_PER_EPOCH)
    # end_step on a multiple of frequency: the last mask update then lands exactly on the target.
    ramp = max(frequency, int(steps_per_epoch * config.epochs * RAMP_SHARE) // frequency * frequency)
    return tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=0.0, final_sparsity=config.target_sparsity, begin_step=0, end_step=ramp, frequency=frequency
    )


def prune_model(parent: keras.Model, data: Dataset, config: PruneConfig, callbacks=()) -> PrunedModel:
    """Pruned and fine-tuned copy of `parent` (left untouched)."""
    schedule = pruning_schedule(len(data.x_train), config)
    structured = config.structure == "2:4"
    left_dense = []

    def wrap(layer):
        if not isinstance(layer, PRUNABLE_LAYERS):
            return layer
        if structured and not takes_m_by_n(layer):
            left_dense.append(layer.name)
            return layer
        return tfmot.sparsity.keras.prune_low_magnitude(
            layer, pruning_schedule=schedule, sparsity_m_by_n=M_BY_N if structured else None
        )

    wrapped = keras.models.clone_model(independent_copy(parent), clone_function=wrap)
    fine_tune(wrapped, data, config, callbacks=(tfmot.sparsity.keras.UpdatePruningStep(), *callbacks))
    model = tfmot.sparsity.keras.strip_pruning(wrapped)
    layer_sparsity = {
        layer.name: float(np.mean(layer.kernel.numpy() == 0))
        for layer in model.layers
        if isinstance(layer, PRUNABLE_LAYERS)
    }
    return PrunedModel(model, layer_sparsity, left_dense)


def main(argv: list[str] | None = None) -> None:
    config = parse_config(PruneConfig, argv)
    data = load_dataset(config.dataset, image_size=config.image_size)
    with mlflow.start_run():
        parent = load_parent(config.model_uri, data)
        variant = derived_variant(parent.variant, config.variant_suffix)
        recipe = {"target_sparsity": config.target_sparsity, "structure": config.structure, "epochs": config.epochs}
        start_variant_run("prune", variant, parent, config, data, **recipe)
        pruned = prune_model(parent.model, data, config, callbacks=(EpochLogger(),))
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
        log_variant("prune", pruned.model, to_tflite(pruned.model), data, parent, kernel_sparsity(pruned.model))


if __name__ == "__main__":
    run_cli("prune", main)
