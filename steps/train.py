"""`train` entry point: fit a float Keras classifier and export its float32 LiteRT deployable.

The float Keras model is the parent of every compressed variant; the float32
.tflite is the baseline they are compared with. The work is
`steps.modeling.training.train`; this module parses, checks the data and logs.
"""

from __future__ import annotations

import mlflow

from steps import contract
from steps.core.stats import chance_level, no_better_than_chance, wilson
from steps.datasets.data import Dataset
from steps.modeling.profile import peak_rss_mb
from steps.parameters import StepFailed, parse_config, run_cli
from steps.release.lineage import checked_inputs, set_lineage_tags
from steps.release.tracking import (
    log_config,
    log_dataset,
    log_deployable,
    log_epoch,
    set_variant_tags,
    step_run,
)
from steps.settings import TrainConfig


def main(argv: list[str] | None = None) -> None:
    config = parse_config(TrainConfig, argv)
    data = checked_inputs(config.dataset, config.image_size, config.base_model, "base_model")
    config.check_input_side(min(data.input_shape[:2]))  # before TensorFlow is imported
    from steps.modeling.architectures import kernel_sparsity
    from steps.modeling.convert import to_tflite
    from steps.modeling.keras_io import initial_model, log_keras_model
    from steps.modeling.measure import Baseline
    from steps.modeling.training import epoch_callback, independent_copy, train

    model = initial_model(config, data)
    with step_run(contract.TRAIN) as run:
        set_variant_tags(contract.FLOAT32_VARIANT, config.base_model)
        log_config(config)
        mlflow.log_param(contract.LEARNING_RATE_USED, config.step_size())
        log_dataset(data)
        teacher = independent_copy(model) if config.distill > 0 and config.base_model else None  # as it was
        trained = train(config, data, model, callbacks=(epoch_callback(log_epoch),), teacher=teacher)
        mlflow.log_metrics(
            {contract.KERAS_ACCURACY: trained.keras_accuracy, contract.EPOCHS_TRAINED: len(trained.history["loss"])}
        )
        log_keras_model(trained.model, data)
        metrics, measured = log_deployable(
            to_tflite(trained.model),
            data,
            None,  # the float32 deployable is its own baseline
            sparsity=kernel_sparsity(trained.model),
            params=trained.model.count_params(),
            robustness=config.robustness,
        )
        set_lineage_tags(Baseline.of(measured, run.info.run_id), [])
        agreement = float((trained.test_predictions == measured.predictions).mean())
        mlflow.log_metrics({contract.AGREEMENT: agreement, contract.PEAK_RSS_MB: peak_rss_mb()})
        refuse_chance_level(measured.val_accuracy, data)  # after logging: the failed run keeps the evidence
    print(
        f"train: run {run.info.run_id}: {data.name} test accuracy {measured.accuracy} "
        f"(validation {measured.val_accuracy:.4f}; Keras {trained.keras_accuracy:.4f}, agreement {agreement:.4f}), "
        f"float32 .tflite {metrics[contract.SIZE_BYTES]:,} B ({metrics[contract.SIZE_GZIP_BYTES]:,} B gzipped), "
        f"p50 {metrics[contract.LATENCY_P50_MS]:.3f} ms"
    )


def refuse_chance_level(val_accuracy: float, data: Dataset) -> None:
    """A float model no better than chance would only be compressed into smaller chance-level variants that the
    gate refuses an hour later: stop here, naming the usual causes."""
    measured = wilson(round(val_accuracy * len(data.y_val)), len(data.y_val))
    if no_better_than_chance(measured, data.y_val, data.n_classes):
        raise StepFailed(
            f"the float model is no better than chance on the validation split (accuracy {measured}; chance "
            f"{chance_level(data.y_val, data.n_classes):.4f}); train longer (epochs, patience), change learning_rate, "
            "set batchnorm=train if BatchNorm layers never learnt their statistics, or check that the labels "
            "match the images"
        )


if __name__ == "__main__":
    run_cli(contract.TRAIN, main)
