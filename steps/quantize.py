"""`quantize` entry point: a parent Keras model -> a .tflite deployable, post-training or quantization-aware.

The work is `steps.compress.compression.quantize` (QAT, or PQAT/CQAT/PCQAT read from
the parent's recipe); this module parses, checks the data, and logs the variant.
"""

from __future__ import annotations

from steps import contract
from steps.parameters import parse_config, run_cli
from steps.release.lineage import checked_inputs
from steps.release.tracking import log_epoch, step_run
from steps.settings import QuantizeConfig


def main(argv: list[str] | None = None) -> None:
    config = parse_config(QuantizeConfig, argv)
    data = checked_inputs(config.dataset, config.image_size, config.model_uri, "model_uri")
    from steps.compress.compression import qat_scheme_name, quantize
    from steps.compress.variants import load_parent, log_variant, start_variant_run
    from steps.modeling.training import epoch_callback

    parent = load_parent(config.model_uri, data, robustness=config.robustness)
    with step_run(contract.QUANTIZE):
        recipe = {"mode": config.mode}
        if config.mode == "qat":
            recipe |= {"scheme": qat_scheme_name(parent.recipe), "epochs": config.epochs}
        variant = start_variant_run(contract.QUANTIZE, config.variant_suffix, parent, config, data, **recipe)
        tflite, sparsity = quantize(parent.model, data, config, parent.recipe, callbacks=(epoch_callback(log_epoch),))
        log_variant(variant, None, tflite, data, parent, sparsity, config.robustness)


if __name__ == "__main__":
    run_cli(contract.QUANTIZE, main)
