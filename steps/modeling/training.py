"""Fitting tf_keras models: a float model from scratch (or from a base model), and fine-tuning a copy.

TensorFlow only: no MLflow here. Callers pass callbacks (the stages pass one
that logs the curves), so plain calls log nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf
import tf_keras as keras

from steps import contract
from steps.datasets.data import Dataset
from steps.modeling.architectures import predicted_classes
from steps.parameters import require_choice
from steps.settings import FineTuneConfig, TrainConfig

MOMENTUM = 0.9  # the classic value for SGD with momentum
LOSS = "sparse_categorical_crossentropy"  # integer labels, softmax outputs


@dataclass
class TrainedModel:
    model: keras.Model
    history: dict[str, list[float]]  # Keras history: loss, accuracy, val_loss, val_accuracy per epoch
    test_predictions: np.ndarray  # the Keras model's class per test sample
    keras_accuracy: float  # on the test split


def make_optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    require_choice("optimizer", name, contract.OPTIMIZERS)
    if name == "adam":
        return keras.optimizers.Adam(learning_rate)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate)
    return keras.optimizers.SGD(learning_rate, momentum=MOMENTUM if name == "momentum" else 0.0)


def seed_everything(seed: int) -> None:
    """Python, numpy and TensorFlow draws from `seed`, and deterministic kernels: the same settings, the same model."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def train(config: TrainConfig, data: Dataset, model: keras.Model, callbacks=()) -> TrainedModel:
    """Fit `model` (new, or a base model to fine-tune) on the train split with early stopping on validation loss."""
    seed_everything(config.seed)
    model.compile(optimizer=make_optimizer(config.optimizer, config.learning_rate), loss=LOSS, metrics=["accuracy"])
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


def fine_tune(model: keras.Model, data: Dataset, config: FineTuneConfig, callbacks=()) -> None:
    """A fixed number of epochs (schedules like pruning's must run to the end): no early stopping."""
    seed_everything(config.seed)
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate), loss=LOSS, metrics=["accuracy"])
    model.fit(
        data.x_train,
        data.y_train,
        validation_data=(data.x_val, data.y_val),
        epochs=config.epochs,
        batch_size=config.batch_size,
        callbacks=list(callbacks),
        verbose=2,
    )


def independent_copy(model: keras.Model) -> keras.Model:
    """A copy sharing no layer or weight with `model`.

    TFMOT wraps the very layer objects of the model it is given, so deriving a
    variant from the parent itself would change the parent's weights.
    """
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def epoch_callback(on_epoch_end) -> keras.callbacks.Callback:
    """A callback that hands each epoch's logs to `on_epoch_end(epoch, logs)` (e.g. tracking.log_epoch)."""
    return keras.callbacks.LambdaCallback(on_epoch_end=on_epoch_end)
