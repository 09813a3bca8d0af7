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
from steps.modeling.augmentation import for_training
from steps.parameters import require_choice
from steps.settings import FineTuneConfig, TrainConfig

MOMENTUM = 0.9  # the classic value for SGD with momentum
# A BatchNorm layer learning its statistics from scratch: Keras's 0.99 (0.999 in the mobilenets) moves them
# too little in a few hundred steps, so inference normalises with the initial mean 0 and variance 1 and answers
# one class whatever the training accuracy. 0.9 lets them settle within a few dozen steps.
FRESH_BATCHNORM_MOMENTUM = 0.9
CALIBRATION_SAMPLES = 256  # one batch's statistics per channel over 256 images x every pixel: precise enough
LOSS = "sparse_categorical_crossentropy"  # integer labels, softmax outputs
DISTILLATION_LOSS = "categorical_crossentropy"  # soft targets: labels mixed with a teacher's probabilities


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


def has_initial_statistics(layer: keras.layers.BatchNormalization) -> bool:
    """Mean 0 and variance 1 everywhere: the layer has never seen data."""
    return bool(np.all(layer.moving_mean.numpy() == 0) and np.all(layer.moving_variance.numpy() == 1))


@dataclass
class BatchNormPlan:
    learning: list  # BatchNorm layers that learn their statistics in this fit
    inference: list  # the ones that stay in inference mode

    def __str__(self) -> str:
        return (
            f"BatchNorm: {len(self.learning)} layers learn their statistics (recalibrated on "
            f"{CALIBRATION_SAMPLES} training samples before each validation), {len(self.inference)} stay in "
            "inference mode"
        )


def prepare_batchnorm(model: keras.Model, mode: str = "auto") -> BatchNormPlan:
    """Set how each BatchNorm layer (wrapped ones too) trains, before compiling. auto: a layer at its initial
    statistics learns them with momentum 0.9; one with learned statistics stays in inference mode, as the
    Keras transfer-learning guide does, since a few fine-tuning batches would only make them noisier.
    train / frozen: every layer."""
    require_choice("batchnorm", mode, contract.BATCHNORM_MODES)
    plan = BatchNormPlan([], [])
    for layer in model.submodules:
        if not isinstance(layer, keras.layers.BatchNormalization):
            continue
        fresh = has_initial_statistics(layer)
        learns = mode == "train" or (mode == "auto" and fresh)
        layer.trainable = learns  # a BatchNorm layer that is not trainable runs in inference mode
        if learns and fresh:
            layer.momentum = min(layer.momentum, FRESH_BATCHNORM_MOMENTUM)
        (plan.learning if learns else plan.inference).append(layer)
    return plan


class BatchNormCalibration(keras.callbacks.Callback):
    """Before each validation, the learning BatchNorm layers' statistics become those of one large batch of
    training samples under the current weights. A moving average lags behind weights that change fast (a
    new network's first epochs): measured on a new MobileNetV2, validation in inference mode then stays near
    chance for epochs while the same model normalised by batch statistics is right 85% of the time; early
    stopping would judge, and keep, the wrong epoch."""

    def __init__(self, model: keras.Model, layers: list, samples: np.ndarray):
        super().__init__()
        self.calibrated, self.layers, self.samples = model, layers, samples  # the model itself, not an augmenting one

    def on_test_begin(self, logs=None):
        calibrate_batchnorm(self.calibrated, self.layers, self.samples)


def calibration(model: keras.Model, plan: BatchNormPlan, data: Dataset) -> tuple[keras.callbacks.Callback, ...]:
    """The callback that calibrates the plan's learning layers of `model`, if any learn."""
    if not plan.learning:
        return ()
    return (BatchNormCalibration(model, plan.learning, data.x_train[:CALIBRATION_SAMPLES]),)


def calibrate_batchnorm(model: keras.Model, layers: list, samples: np.ndarray) -> None:
    """One forward pass in training mode with momentum 0: each layer's moving statistics become the batch's."""
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.momentum = 0.0
    try:
        model(samples, training=True)  # eager: BatchNorm assigns its moving statistics; no weight changes
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum


def distilled_targets(teacher: keras.Model, x: np.ndarray, y: np.ndarray, weight: float) -> np.ndarray:
    """(1 - weight) x one-hot labels + weight x the teacher's probabilities. Cross-entropy against these is the
    labels' loss plus `weight` times the KL divergence to the teacher (temperature 1), up to a constant:
    knowledge distillation, and Learning without Forgetting when the teacher is the model before an update."""
    probabilities = teacher.predict(x, batch_size=256, verbose=0)
    one_hot = np.eye(probabilities.shape[1], dtype=np.float32)[np.asarray(y, np.int64)]
    return ((1.0 - weight) * one_hot + weight * probabilities).astype(np.float32)


def fit_targets(data: Dataset, teacher: keras.Model | None, weight: float):
    """The loss and the (training, validation) targets of a fit: integer labels, or with a teacher and a
    positive weight, distilled training targets (validation keeps the plain labels, one-hot, so early
    stopping and the logged curves judge the labels alone)."""
    if teacher is None or weight <= 0:
        return LOSS, data.y_train, data.y_val
    n_classes = teacher.output_shape[-1]
    one_hot_val = np.eye(n_classes, dtype=np.float32)[np.asarray(data.y_val, np.int64)]
    return DISTILLATION_LOSS, distilled_targets(teacher, data.x_train, data.y_train, weight), one_hot_val


def train(
    config: TrainConfig, data: Dataset, model: keras.Model, callbacks=(), teacher: keras.Model | None = None
) -> TrainedModel:
    """Fit `model` (new, or a base model to fine-tune) on the train split with early stopping on validation loss;
    with a teacher and config.distill > 0, towards its answers too (see distilled_targets)."""
    seed_everything(config.seed)
    batchnorm = prepare_batchnorm(model, config.batchnorm)
    if batchnorm.learning or batchnorm.inference:
        print(f"train: {batchnorm} (batchnorm={config.batchnorm})")
    print(f"train: {config.optimizer} at learning rate {config.step_size()} (learning_rate={config.learning_rate})")
    callbacks = (*calibration(model, batchnorm, data), *callbacks)
    loss, y_train, y_val = fit_targets(data, teacher, config.distill)
    fitted = for_training(model, config.augment, config.seed)  # model itself, or augmenting layers in front of it
    if fitted is not model:
        print(
            f"train: augment={config.augment}: {', '.join(layer.name for layer in fitted.layers[1:-1])} (training only)"
        )
    fitted.compile(optimizer=make_optimizer(config.optimizer, config.step_size()), loss=loss, metrics=["accuracy"])
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience, restore_best_weights=True)
    history = fitted.fit(
        data.x_train,
        y_train,
        validation_data=(data.x_val, y_val),
        epochs=config.epochs,
        batch_size=config.batch_size,
        callbacks=[stop, *callbacks],
        verbose=2,  # one line per epoch: progress without a flood
    )
    predictions = predicted_classes(model, data.x_test)
    history = {k: [float(v) for v in vs] for k, vs in history.history.items()}
    return TrainedModel(model, history, predictions, float((predictions == data.y_test).mean()))


def fine_tune(
    model: keras.Model, data: Dataset, config: FineTuneConfig, callbacks=(), teacher: keras.Model | None = None
) -> None:
    """A fixed number of epochs (schedules like pruning's must run to the end): no early stopping.
    BatchNorm layers follow prepare_batchnorm's auto rule: a trained parent's statistics stay as they are.
    With config.distill > 0 the targets mix in the teacher's answers (the parent the variant is made from); with
    config.augment the inputs are augmented as the parent's training augmented them."""
    seed_everything(config.seed)
    callbacks = (*calibration(model, prepare_batchnorm(model), data), *callbacks)
    loss, y_train, y_val = fit_targets(data, teacher, config.distill)
    fitted = for_training(model, config.augment, config.seed)  # the parent's augmentation, or the model itself
    fitted.compile(optimizer=keras.optimizers.Adam(config.learning_rate), loss=loss, metrics=["accuracy"])
    fitted.fit(
        data.x_train,
        y_train,
        validation_data=(data.x_val, y_val),
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
