"""Every optimizer name builds its optimizer; BatchNorm layers learn or keep their statistics as README says;
distillation mixes a teacher's answers into the targets and pulls the student towards them."""

from __future__ import annotations

import numpy as np
import pytest
import tf_keras as keras

from steps import contract
from steps.datasets.data import Dataset, load_dataset
from steps.modeling.training import (
    LOSS,
    calibrate_batchnorm,
    distilled_targets,
    fine_tune,
    fit_targets,
    make_optimizer,
    prepare_batchnorm,
)
from steps.settings import FineTuneConfig


@pytest.mark.parametrize("name", contract.OPTIMIZERS)
def test_every_optimizer_name_builds_an_optimizer(name):
    optimizer = make_optimizer(name, 0.05)
    assert float(optimizer.learning_rate) == pytest.approx(0.05)
    assert (getattr(optimizer, "momentum", 0.0) > 0) == (name == "momentum")


def _with_batchnorm() -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((4, 4, 1)),
            keras.layers.Conv2D(2, 3, name="conv"),
            keras.layers.BatchNormalization(momentum=0.999, name="bn"),
            keras.layers.Flatten(),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )


def _learned(model: keras.Model) -> keras.Model:
    bn = model.get_layer("bn")
    bn.moving_mean.assign([0.3, -0.2])
    bn.moving_variance.assign([2.0, 0.5])
    return model


def test_auto_lets_a_new_batchnorm_layer_learn_its_statistics_quickly():
    model = _with_batchnorm()
    plan = prepare_batchnorm(model)
    bn = model.get_layer("bn")
    assert (plan.learning, plan.inference) == ([bn], [])
    assert bn.trainable and bn.momentum == 0.9  # at the mobilenets' 0.999 a few hundred steps leave mean 0, var 1


def test_auto_keeps_learned_statistics_in_inference_mode_even_through_training():
    model = _learned(_with_batchnorm())
    assert prepare_batchnorm(model).inference == [model.get_layer("bn")]
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(np.random.default_rng(0).random((16, 4, 4, 1)), np.arange(16) % 2, epochs=1, verbose=0)
    np.testing.assert_allclose(model.get_layer("bn").moving_mean.numpy(), [0.3, -0.2], rtol=1e-6)


@pytest.mark.parametrize("mode, learning", [("train", 1), ("frozen", 0)])
def test_train_and_frozen_apply_to_every_layer_whatever_its_statistics(mode, learning):
    for model in (_with_batchnorm(), _learned(_with_batchnorm())):
        plan = prepare_batchnorm(model, mode)
        assert (len(plan.learning), len(plan.inference)) == (learning, 1 - learning)
        assert model.get_layer("bn").trainable == bool(learning)


def test_calibration_sets_the_learning_layers_statistics_to_those_of_the_samples_and_keeps_their_momentum():
    model = _with_batchnorm()
    plan = prepare_batchnorm(model)
    samples = np.random.default_rng(0).random((64, 4, 4, 1)).astype(np.float32) * 3
    calibrate_batchnorm(model, plan.learning, samples)
    bn = model.get_layer("bn")
    features = model.get_layer("conv")(samples).numpy()
    np.testing.assert_allclose(bn.moving_mean.numpy(), features.mean(axis=(0, 1, 2)), rtol=1e-4)
    unbiased = features.reshape(-1, 2).var(axis=0, ddof=1)  # Keras keeps the unbiased variance
    np.testing.assert_allclose(bn.moving_variance.numpy(), unbiased, rtol=1e-4)
    assert bn.momentum == 0.9


def _classifier(seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])


def test_distilled_targets_mix_the_labels_with_the_teachers_probabilities():
    teacher, x, y = _classifier(0), np.random.default_rng(0).random((6, 4)).astype(np.float32), np.arange(6) % 3
    targets = distilled_targets(teacher, x, y, 0.3)
    assert targets == pytest.approx(0.7 * np.eye(3)[y] + 0.3 * teacher.predict(x, verbose=0), abs=1e-6)
    assert targets.sum(axis=1) == pytest.approx(1.0)


def test_without_a_teacher_or_a_weight_a_fit_learns_the_labels_alone():
    data = load_dataset("digits")
    for teacher, weight in ((None, 0.5), (_classifier(0), 0.0)):
        loss, y_train, y_val = fit_targets(data, teacher, weight)
        assert loss == LOSS and y_train is data.y_train and y_val is data.y_val


def test_distillation_pulls_a_student_towards_its_teacher_on_the_same_labels():
    """Labels that carry nothing (all one class): with weight 0.9 the student's answers end near the teacher's."""
    rng = np.random.default_rng(1)
    x = rng.random((128, 4)).astype(np.float32)
    data = Dataset(
        "toy", "toy", x, np.zeros(128, int), x[:32], np.zeros(32, int), x[:32], np.zeros(32, int), ("a", "b", "c")
    )
    teacher = _classifier(1)
    gaps = []
    for weight in (0.0, 0.9):
        student = _classifier(2)
        fine_tune(
            student, data, FineTuneConfig(model_uri="m", epochs=10, learning_rate=0.1, distill=weight), teacher=teacher
        )
        gaps.append(np.abs(student.predict(x, verbose=0) - teacher.predict(x, verbose=0)).mean())
    assert gaps[1] < gaps[0] / 3
