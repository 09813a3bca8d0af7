"""How much each layer can be pruned on its own: the sensitivity analysis behind per-layer sparsity targets.

Deep Compression (Han et al., 2016) chose each layer's pruning rate from such a
curve: prune one layer alone at rising sparsity, fine-tune briefly, and see
what the validation accuracy does. Layers holding a large share of the weights
and tolerating high sparsity are where the size goes; a layer that breaks at
50% is left denser. Layers with under MIN_SHARE of the weights are not worth
the trials and stay dense.
"""

from __future__ import annotations

import numpy as np
import tf_keras as keras

from steps.compress.compression import WEIGHT_LAYERS, prune_model
from steps.datasets.data import Dataset
from steps.modeling.architectures import predicted_classes
from steps.settings import PruneConfig

SPARSITIES = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98)
MIN_SHARE = 0.01  # of the model's prunable weights
MAX_SPARSITY = 0.99


def layer_weights(model: keras.Model) -> dict[str, int]:
    """Kernel weights of every prunable layer, in model order."""
    return {
        layer.name: int(layer.kernel.shape.num_elements()) for layer in model.layers if isinstance(layer, WEIGHT_LAYERS)
    }


def val_accuracy(model: keras.Model, data: Dataset) -> float:
    return float((predicted_classes(model, data.x_val) == data.y_val).mean())


def sensitivity_table(
    model: keras.Model, data: Dataset, config: PruneConfig, sparsities=SPARSITIES, progress=print
) -> list[dict]:
    """One row per (layer, sparsity): that layer alone pruned and fine-tuned; the model is left untouched."""
    weights = layer_weights(model)
    total = sum(weights.values())
    baseline = val_accuracy(model, data)
    rows = []
    for name, count in weights.items():
        if count / total < MIN_SHARE:
            continue
        for sparsity in sparsities:
            pruned = prune_model(model, data, config, layer_sparsity={name: sparsity}).model
            accuracy = val_accuracy(pruned, data)
            rows.append(
                {
                    "layer": name,
                    "weights": count,
                    "share": count / total,
                    "sparsity": sparsity,
                    "val_accuracy": accuracy,
                    "val_accuracy_drop": baseline - accuracy,
                }
            )
            progress(
                f"sensitivity: {name} ({count / total:.0%} of the weights) at {sparsity:.0%}: "
                f"validation accuracy {accuracy:.4f} (drop {baseline - accuracy:+.4f})"
            )
    return rows


def tolerated_sparsity(rows: list[dict], max_drop: float) -> dict[str, float]:
    """Per layer: the highest sparsity tried whose drop stays within max_drop, and every lower one too
    (0 when even the lowest breaks it): a layer's own ceiling, when the others are left dense."""
    tolerated = {}
    for layer in dict.fromkeys(row["layer"] for row in rows):
        ceiling = 0.0
        for row in sorted((r for r in rows if r["layer"] == layer), key=lambda r: r["sparsity"]):
            if row["val_accuracy_drop"] > max_drop:
                break
            ceiling = row["sparsity"]
        tolerated[layer] = ceiling
    return tolerated


def scaled_targets(tolerated: dict[str, float], scale: float) -> dict[str, float]:
    """The search's sparsity per layer: each layer's ceiling times one global scale, at most MAX_SPARSITY."""
    return {layer: float(np.clip(ceiling * scale, 0.0, MAX_SPARSITY)) for layer, ceiling in tolerated.items()}
