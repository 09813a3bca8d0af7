"""Every optimizer name builds its optimizer; BatchNorm layers learn or keep their statistics as README says."""

from __future__ import annotations

import numpy as np
import pytest
import tf_keras as keras

from steps import contract
from steps.modeling.training import calibrate_batchnorm, make_optimizer, prepare_batchnorm


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
