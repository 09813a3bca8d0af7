"""The TFMOT transformations behind prune, cluster and quantize, each on a copy of its parent.

Pruning: magnitude pruning along a polynomial schedule that reaches
`target_sparsity` by 70% of the fine-tuning steps (the rest lets accuracy
recover); with `structure=2:4` every block of four consecutive input-channel
weights keeps at most two (the layout sparse hardware kernels use), and layers
whose input channels are not a multiple of four stay dense.
Clustering: k-means++ centroids, at most `n_clusters` distinct values per
kernel, so after quantization its bytes repeat and compress well; with
`preserve_sparsity` a pruned parent's zeros stay zeros.
Quantization: post-training modes convert directly (steps/modeling/convert.py); `qat`
fine-tunes with fake quantization first, using TFMOT's collaborative schemes
(PQAT, CQAT, PCQAT) when the parent was pruned and/or clustered, so the zeros
and shared values survive.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import tensorflow_model_optimization as tfmot
import tf_keras as keras
from tensorflow_model_optimization.python.core.clustering.keras.cluster import strip_clustering
from tensorflow_model_optimization.python.core.clustering.keras.cluster_config import CentroidInitialization
from tensorflow_model_optimization.python.core.clustering.keras.experimental import cluster as experimental_cluster
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit.default_8bit_quantize_configs import (
    NoOpQuantizeConfig,
)

from steps import contract
from steps.datasets.data import Dataset
from steps.modeling.architectures import kernel_sparsity
from steps.modeling.convert import to_tflite
from steps.modeling.training import fine_tune, independent_copy
from steps.parameters import UsageError
from steps.settings import ClusterConfig, PruneConfig, QuantizeConfig

M_BY_N = (2, 4)  # zeros, block length
WEIGHT_LAYERS = (keras.layers.Conv2D, keras.layers.Dense)  # the layers pruned and clustered
RAMP_SHARE = 0.7  # share of fine-tuning steps over which sparsity ramps up to the target
UPDATES_PER_EPOCH = 4  # mask updates per epoch: frequent enough that short runs reach the target


@dataclass
class PrunedModel:
    model: keras.Model  # pruning wrappers stripped: a plain Keras model with zeros in its kernels
    layer_sparsity: dict[str, float]  # kernel sparsity of every prunable layer
    left_dense: list[str]  # layers that could not take the requested structure


@dataclass
class ClusteredModel:
    model: keras.Model  # clustering wrappers stripped
    unique_values: dict[str, int]  # distinct kernel values per clustered layer


def takes_m_by_n(layer: keras.layers.Layer) -> bool:
    """2:4 blocks run along input channels (TFLite layout), so their count must be a multiple of 4."""
    return layer.kernel.shape[-2] % M_BY_N[1] == 0


def pruning_schedule(
    n_train: int, config: PruneConfig, target: float | None = None
) -> tfmot.sparsity.keras.PruningSchedule:
    """Polynomial ramp to `target` (config.target_sparsity unless given) over RAMP_SHARE of the fine-tuning."""
    steps_per_epoch = math.ceil(n_train / config.batch_size)
    frequency = max(1, steps_per_epoch // UPDATES_PER_EPOCH)
    # end_step on a multiple of frequency: the last mask update then lands exactly on the target.
    ramp = max(frequency, int(steps_per_epoch * config.epochs * RAMP_SHARE) // frequency * frequency)
    final = config.target_sparsity if target is None else target
    return tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=0.0, final_sparsity=final, begin_step=0, end_step=ramp, frequency=frequency
    )


def check_layer_names(model: keras.Model, per_layer: dict | None, name: str) -> None:
    """A per-layer setting may only name the model's kernel layers (a typo would silently leave one as it was)."""
    known = [layer.name for layer in model.layers if isinstance(layer, WEIGHT_LAYERS)]
    unknown = sorted(set(per_layer or {}) - set(known))
    if unknown:
        raise ValueError(f"{name} names {unknown}, which the model has no kernel layer of; its layers: {known}")


def prune_model(
    parent: keras.Model,
    data: Dataset,
    config: PruneConfig,
    callbacks=(),
    layer_sparsity: dict[str, float] | None = None,
) -> PrunedModel:
    """Pruned and fine-tuned copy of `parent` (left untouched).

    layer_sparsity: a target per layer name (0 leaves that layer dense; layers not named too), for a
    sensitivity analysis or a search; by default every prunable layer gets config.target_sparsity.
    """
    structured = config.structure == "2:4"
    left_dense = []
    check_layer_names(parent, layer_sparsity, "layer_sparsity")

    def wrap(layer):
        if not isinstance(layer, WEIGHT_LAYERS):
            return layer
        target = config.target_sparsity if layer_sparsity is None else layer_sparsity.get(layer.name, 0.0)
        if target <= 0:
            return layer
        if structured and not takes_m_by_n(layer):
            left_dense.append(layer.name)
            return layer
        return tfmot.sparsity.keras.prune_low_magnitude(
            layer,
            pruning_schedule=pruning_schedule(len(data.x_train), config, target),
            sparsity_m_by_n=M_BY_N if structured else None,
        )

    wrapped = keras.models.clone_model(independent_copy(parent), clone_function=wrap)
    fine_tune(wrapped, data, config, (tfmot.sparsity.keras.UpdatePruningStep(), *callbacks), teacher=parent)
    model = tfmot.sparsity.keras.strip_pruning(wrapped)
    return PrunedModel(model, _per_layer(model, lambda kernel: float(np.mean(kernel == 0))), left_dense)


def cluster_model(
    parent: keras.Model,
    data: Dataset,
    config: ClusterConfig,
    callbacks=(),
    layer_clusters: dict[str, int] | None = None,
) -> ClusteredModel:
    """Clustered and fine-tuned copy of `parent` (left untouched); layer_clusters: a count per layer name
    (0 leaves a layer unclustered), by default config.n_clusters for every clusterable layer."""

    check_layer_names(parent, layer_clusters, "layer_clusters")

    def wrap(layer):
        if not isinstance(layer, WEIGHT_LAYERS):
            return layer
        clusters = config.n_clusters if layer_clusters is None else layer_clusters.get(layer.name, 0)
        if clusters <= 0:
            return layer
        return experimental_cluster.cluster_weights(
            layer,
            number_of_clusters=clusters,
            cluster_centroids_init=CentroidInitialization.KMEANS_PLUS_PLUS,
            preserve_sparsity=config.preserve_sparsity,
        )

    wrapped = keras.models.clone_model(independent_copy(parent), clone_function=wrap)
    fine_tune(wrapped, data, config, callbacks, teacher=parent)
    model = strip_clustering(wrapped)
    return ClusteredModel(model, _per_layer(model, lambda kernel: int(np.unique(kernel).size)))


def qat_scheme_name(recipe: list[dict]) -> str:
    """QAT for a plain parent; PQAT, CQAT or PCQAT when pruning and/or clustering made it."""
    pruned = any(step["step"] == contract.PRUNE for step in recipe)
    clustered = any(step["step"] == contract.CLUSTER for step in recipe)
    return {(False, False): "QAT", (True, False): "PQAT", (False, True): "CQAT", (True, True): "PCQAT"}[
        (pruned, clustered)
    ]


def quantization_aware_model(
    parent: keras.Model, data: Dataset, config: QuantizeConfig, scheme: str, callbacks=()
) -> keras.Model:
    """A fine-tuned copy of `parent` with fake-quantization, ready for int8 conversion."""
    nested = [layer.name for layer in parent.layers if isinstance(layer, keras.Model)]
    if nested:  # TFMOT quantizes layers, not models inside models (keras_io flattens the ones it can)
        raise UsageError(
            f"quantization-aware training needs a flat model; {nested} are models nested inside it that could not "
            "be flattened (a subclassed model?); use post-training int8 (mode=int8) or rebuild it functionally"
        )
    copy = keras.models.clone_model(independent_copy(parent), clone_function=_annotate_rescaling)
    annotated = tfmot.quantization.keras.quantize_annotate_model(copy)
    with tfmot.quantization.keras.quantize_scope({"NoOpQuantizeConfig": NoOpQuantizeConfig}):
        if scheme == "QAT":
            model = tfmot.quantization.keras.quantize_apply(annotated)
        elif scheme == "PQAT":
            model = tfmot.quantization.keras.quantize_apply(
                annotated, tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme()
            )
        else:
            model = tfmot.quantization.keras.quantize_apply(
                annotated,
                tfmot.experimental.combine.Default8BitClusterPreserveQuantizeScheme(
                    preserve_sparsity=scheme == "PCQAT"
                ),
            )
    fine_tune(model, data, config, callbacks, teacher=parent)
    return model


def _annotate_rescaling(layer: keras.layers.Layer) -> keras.layers.Layer:
    """A Rescaling layer (the mobilenets' [0, 1] -> [-1, 1]) is affine: TFMOT has no rule for it, so it gets
    one that leaves it as it is; the converter calibrates its output like any other activation."""
    if isinstance(layer, keras.layers.Rescaling):
        return tfmot.quantization.keras.quantize_annotate_layer(layer, NoOpQuantizeConfig())
    return layer


def quantize(
    parent: keras.Model, data: Dataset, config: QuantizeConfig, recipe: list[dict], callbacks=()
) -> tuple[bytes, float]:
    """The .tflite deployable and the kernel sparsity it carries."""
    if config.mode != "qat":
        return to_tflite(parent, config.mode, data.representative()), kernel_sparsity(parent)
    model = quantization_aware_model(parent, data, config, qat_scheme_name(recipe), callbacks)
    return to_tflite(model, "int8", data.representative()), kernel_sparsity(model)


def _per_layer(model: keras.Model, measure) -> dict:
    return {layer.name: measure(layer.kernel.numpy()) for layer in model.layers if isinstance(layer, WEIGHT_LAYERS)}
