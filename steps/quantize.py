"""`quantize` entry point: a parent Keras model -> a .tflite deployable.

Post-training modes convert directly (see steps/convert.py). `qat` first
fine-tunes with fake quantization, then converts to int8; when the parent was
pruned and/or clustered it uses TFMOT's collaborative schemes (PQAT, CQAT,
PCQAT) so the zeros and shared values survive quantization.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlflow
import tensorflow_model_optimization as tfmot
import tf_keras as keras

from steps.architectures import kernel_sparsity
from steps.config import parse_config, require_choice, run_cli, setting
from steps.convert import CONVERSION_MODES, to_tflite
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

MODES = (*CONVERSION_MODES, "qat")
VARIANT_SUFFIX = {"none": "float32", "dynamic": "dynamic", "float16": "float16", "int8": "int8", "qat": "qat-int8"}


@dataclass(frozen=True)
class QuantizeConfig(FineTuneConfig):
    """Convert a Keras model to a LiteRT deployable, quantized by `mode`."""

    epochs: int = setting(3, "quantization-aware fine-tuning epochs (mode=qat only)")
    learning_rate: float = setting(0.0001, "quantization-aware fine-tuning step size (mode=qat only)")
    mode: str = setting("int8", f"one of {', '.join(MODES)}")

    def __post_init__(self):
        super().__post_init__()
        require_choice("mode", self.mode, MODES)


def qat_scheme_name(recipe: list[dict]) -> str:
    """QAT for a plain parent; PQAT, CQAT or PCQAT when pruning and/or clustering made it."""
    pruned = any(step["step"] == "prune" for step in recipe)
    clustered = any(step["step"] == "cluster" for step in recipe)
    return {(False, False): "QAT", (True, False): "PQAT", (False, True): "CQAT", (True, True): "PCQAT"}[
        (pruned, clustered)
    ]


def quantization_aware_model(
    parent: keras.Model, data: Dataset, config: QuantizeConfig, scheme: str, callbacks=()
) -> keras.Model:
    """A fine-tuned copy of `parent` with fake-quantization, ready for int8 conversion."""
    annotated = tfmot.quantization.keras.quantize_annotate_model(independent_copy(parent))
    with tfmot.quantization.keras.quantize_scope():
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
    fine_tune(model, data, config, callbacks)
    return model


def quantize(
    parent: keras.Model, data: Dataset, config: QuantizeConfig, recipe: list[dict], callbacks=()
) -> tuple[bytes, float]:
    """The .tflite deployable and the kernel sparsity it carries."""
    if config.mode != "qat":
        return to_tflite(parent, config.mode, data.representative()), kernel_sparsity(parent)
    model = quantization_aware_model(parent, data, config, qat_scheme_name(recipe), callbacks)
    return to_tflite(model, "int8", data.representative()), kernel_sparsity(model)


def main(argv: list[str] | None = None) -> None:
    config = parse_config(QuantizeConfig, argv)
    data = load_dataset(config.dataset, image_size=config.image_size)
    with mlflow.start_run():
        parent = load_parent(config.model_uri, data)
        variant = derived_variant(parent.variant, VARIANT_SUFFIX[config.mode])
        recipe = {"mode": config.mode}
        if config.mode == "qat":
            recipe |= {"scheme": qat_scheme_name(parent.recipe), "epochs": config.epochs}
        start_variant_run("quantize", variant, parent, config, data, **recipe)
        tflite, sparsity = quantize(parent.model, data, config, parent.recipe, callbacks=(EpochLogger(),))
        log_variant("quantize", None, tflite, data, parent, sparsity)


if __name__ == "__main__":
    run_cli("quantize", main)
