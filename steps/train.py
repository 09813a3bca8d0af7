"""`train` entry point: fit a float Keras classifier and export its float32 LiteRT deployable.

The float Keras model is the parent of every compressed variant; the float32
.tflite is the baseline they are compared with.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlflow
import numpy as np
import tensorflow as tf
import tf_keras as keras

from steps import contract
from steps.architectures import ARCHITECTURES, build_model, kernel_sparsity, predicted_classes
from steps.config import parse_config, require_choice, require_positive, run_cli, setting
from steps.convert import to_tflite
from steps.data import Dataset, load_dataset
from steps.tracking import (
    EpochLogger,
    ModelLoadError,
    load_keras_model,
    log_config,
    log_dataset,
    log_deployable,
    log_keras_model,
    set_step_tags,
)
from steps.variants import Baseline, set_lineage_tags

OPTIMIZERS = ("sgd", "momentum", "rmsprop", "adam")
MOMENTUM = 0.9  # the classic value for SGD with momentum


@dataclass(frozen=True)
class TrainConfig:
    """Train a float Keras classifier (or fine-tune base_model) and export it to LiteRT."""

    dataset: str = setting("digits", "'digits', a .npz file (x_train, y_train, x_test, y_test) or an image folder")
    image_size: int = setting(28, "side in pixels that images of an image folder are resized to")
    architecture: str = setting("cnn", f"{' or '.join(ARCHITECTURES)}; unused when base_model is given")
    width: int = setting(32, "filters of the first conv layer; every layer scales with it")
    optimizer: str = setting("adam", f"one of {', '.join(OPTIMIZERS)}")
    learning_rate: float = setting(0.001, "optimizer step size")
    epochs: int = setting(40, "most epochs to train; early stopping on validation loss usually ends sooner")
    batch_size: int = setting(32, "samples per gradient step")
    patience: int = setting(5, "epochs without a better validation loss before stopping (best weights kept)")
    seed: int = setting(
        42, "seed for weight init and shuffling (the data split is fixed, so every stage tests on the same samples)"
    )
    base_model: str = setting(
        "", "a Keras model to fine-tune instead of a new one: MLflow model URI, .keras/.h5 or SavedModel"
    )

    def __post_init__(self):
        require_choice("optimizer", self.optimizer, OPTIMIZERS)
        require_choice("architecture", self.architecture, ARCHITECTURES)
        for name in ("width", "learning_rate", "epochs", "batch_size", "image_size"):
            require_positive(name, getattr(self, name))
        if self.patience < 0:
            raise ValueError(f"patience must be >= 0, got {self.patience}")


@dataclass
class TrainedModel:
    model: keras.Model
    history: dict[str, list[float]]  # Keras history: loss, accuracy, val_loss, val_accuracy per epoch
    test_predictions: np.ndarray  # the Keras model's class per test sample
    keras_accuracy: float  # on the test split


def make_optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    require_choice("optimizer", name, OPTIMIZERS)
    if name == "adam":
        return keras.optimizers.Adam(learning_rate)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate)
    return keras.optimizers.SGD(learning_rate, momentum=MOMENTUM if name == "momentum" else 0.0)


def initial_model(config: TrainConfig, data: Dataset) -> keras.Model:
    """A new model of `architecture`, or the base model checked against the data."""
    if not config.base_model:
        return build_model(config.architecture, data.input_shape, data.n_classes, config.width)
    model = load_keras_model(config.base_model)
    if tuple(model.input_shape[1:]) != data.input_shape:
        raise ModelLoadError(
            f"base_model takes inputs {tuple(model.input_shape[1:])} but dataset {data.name!r} has "
            f"{data.input_shape}; use a dataset of that shape (image_size for folders) or another base model"
        )
    if model.output_shape[-1] != data.n_classes:
        raise ModelLoadError(
            f"base_model predicts {model.output_shape[-1]} classes but dataset {data.name!r} has {data.n_classes}"
        )
    return model


def train(config: TrainConfig, data: Dataset, callbacks: tuple[keras.callbacks.Callback, ...] = ()) -> TrainedModel:
    """Fit on the train split with early stopping on the validation split; evaluate on test."""
    keras.utils.set_random_seed(config.seed)
    tf.config.experimental.enable_op_determinism()
    model = initial_model(config, data)
    model.compile(
        optimizer=make_optimizer(config.optimizer, config.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience, restore_best_weights=True)
    history = model.fit(
        data.x_train,
        data.y_train,
        validation_data=(data.x_val, data.y_val),
        epochs=config.epochs,
        batch_size=config.batch_size,
        callbacks=[stop, *callbacks],
        verbose=2,  # one line per epoch: progress without a flood
    )
    predictions = predicted_classes(model, data.x_test)
    history = {k: [float(v) for v in vs] for k, vs in history.history.items()}
    return TrainedModel(model, history, predictions, float((predictions == data.y_test).mean()))


def main(argv: list[str] | None = None) -> None:
    config = parse_config(TrainConfig, argv)
    data = load_dataset(config.dataset, image_size=config.image_size)
    with mlflow.start_run() as run:
        set_step_tags("train", contract.FLOAT32_VARIANT, config.base_model)
        log_config(config)
        log_dataset(data)
        trained = train(config, data, callbacks=(EpochLogger(),))
        mlflow.log_metrics(
            {
                contract.KERAS_ACCURACY: trained.keras_accuracy,
                contract.EPOCHS_TRAINED: len(trained.history["loss"]),
            }
        )
        log_keras_model(trained.model, data)
        metrics, measured = log_deployable(
            to_tflite(trained.model),
            data,
            sparsity=kernel_sparsity(trained.model),
            params=trained.model.count_params(),
        )
        set_lineage_tags(Baseline(run.info.run_id, metrics[contract.ACCURACY], metrics[contract.SIZE_GZIP_BYTES]), [])
        agreement = float((trained.test_predictions == measured.predictions).mean())
        mlflow.log_metric(contract.AGREEMENT, agreement)
    print(
        f"train: run {run.info.run_id}: {data.name} test accuracy {metrics[contract.ACCURACY]:.4f} "
        f"(Keras {trained.keras_accuracy:.4f}, agreement {agreement:.4f}), "
        f"float32 .tflite {metrics[contract.SIZE_BYTES]:,} B ({metrics[contract.SIZE_GZIP_BYTES]:,} B gzipped), "
        f"p50 {metrics[contract.LATENCY_P50_MS]:.3f} ms"
    )


if __name__ == "__main__":
    run_cli("train", main)
