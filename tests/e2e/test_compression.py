"""Pruning, clustering and quantization on a real digits model: the structure each promises is in the
weights, the deployables agree with their Keras parents, and parents are never modified. These train models
(a minute in all), so they are end-to-end tests."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest

from steps import contract
from steps.compress.compression import M_BY_N, cluster_model, prune_model, qat_scheme_name, quantize
from steps.compress.variants import load_parent
from steps.datasets.data import load_dataset
from steps.modeling.architectures import build_model, kernel_sparsity
from steps.modeling.convert import to_tflite
from steps.modeling.keras_io import ModelLoadError, log_keras_model
from steps.modeling.litert_runtime import LiteRTClassifier
from steps.modeling.measure import Baseline
from steps.modeling.training import train
from steps.release.lineage import set_lineage_tags
from steps.release.tracking import log_dataset, log_litert_model
from steps.settings import ClusterConfig, PruneConfig, QuantizeConfig, TrainConfig
from tests.support.tflite_graph import float_ops

pytestmark = pytest.mark.e2e
PARENT = "runs:/parent/keras_model"  # plain functions take the model itself; the URI only satisfies the config


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def float_model(digits):
    config = TrainConfig()
    return train(config, digits, build_model(config.architecture, digits.input_shape, 10, config.width)).model


@pytest.fixture(scope="module")
def pruned(float_model, digits):
    before = [w.copy() for w in float_model.get_weights()]
    result = prune_model(float_model, digits, PruneConfig(model_uri=PARENT, epochs=4))
    return result, before


def agreement(tflite: bytes, keras_model, x) -> float:
    litert = LiteRTClassifier(tflite).predict_proba(x).argmax(axis=1)
    return float((litert == keras_model.predict(x, verbose=0).argmax(axis=1)).mean())


def test_pruning_reaches_the_target_sparsity_in_every_layer(pruned):
    result, _ = pruned
    assert kernel_sparsity(result.model) == pytest.approx(0.8, abs=0.01)
    assert all(abs(s - 0.8) <= 0.01 for s in result.layer_sparsity.values()), result.layer_sparsity


def test_pruning_leaves_the_parent_weights_unchanged(pruned, float_model):
    _, before = pruned
    for original, now in zip(before, float_model.get_weights()):
        np.testing.assert_array_equal(original, now)
    assert kernel_sparsity(float_model) < 0.01


def test_pruned_int8_deployable_agrees_with_its_keras_parent(pruned, digits):
    result, _ = pruned
    tflite = to_tflite(result.model, "int8", digits.representative())
    assert agreement(tflite, result.model, digits.x_test) >= 0.97


def test_2_4_pruning_zeroes_two_of_every_four_input_channel_weights(float_model, digits):
    result = prune_model(float_model, digits, PruneConfig(model_uri=PARENT, structure="2:4", epochs=2))
    assert result.left_dense == ["conv0a"]  # one input channel: no block of four to prune
    zeros, block = M_BY_N
    for layer in result.model.layers:
        if layer.name not in result.layer_sparsity or layer.name in result.left_dense:
            continue
        kernel = layer.kernel.numpy()
        channels_in = kernel.shape[-2]
        # TFLite layout: output channel first, input channels last; blocks run along input channels.
        rows = np.moveaxis(kernel, -1, 0).reshape(-1, channels_in)
        blocks = rows.reshape(rows.shape[0], channels_in // block, block)
        assert ((blocks == 0).sum(axis=-1) >= zeros).all(), f"{layer.name} has a block with fewer than {zeros} zeros"


def test_clustering_keeps_at_most_n_clusters_values_per_kernel(float_model, digits):
    before = [w.copy() for w in float_model.get_weights()]
    result = cluster_model(float_model, digits, ClusterConfig(model_uri=PARENT, n_clusters=8, epochs=1))
    assert result.unique_values and all(1 < n <= 8 for n in result.unique_values.values()), result.unique_values
    for original, now in zip(before, float_model.get_weights()):
        np.testing.assert_array_equal(original, now)


def test_sparsity_preserving_clustering_keeps_the_pruned_zeros(pruned, digits):
    result, _ = pruned
    clustered = cluster_model(result.model, digits, ClusterConfig(model_uri=PARENT, epochs=1, preserve_sparsity=True))
    for pruned_layer, clustered_layer in zip(result.model.layers, clustered.model.layers):
        if pruned_layer.name in result.layer_sparsity:
            was_zero = pruned_layer.kernel.numpy() == 0
            assert (clustered_layer.kernel.numpy()[was_zero] == 0).all(), pruned_layer.name
    assert all(n <= 16 + 1 for n in clustered.unique_values.values())  # the zero may come on top of the clusters


@pytest.mark.parametrize("mode, minimum", [("dynamic", 0.995), ("float16", 0.995), ("int8", 0.97), ("none", 0.995)])
def test_each_post_training_mode_agrees_with_its_keras_parent(float_model, digits, mode, minimum):
    tflite, sparsity = quantize(float_model, digits, QuantizeConfig(model_uri=PARENT, mode=mode), recipe=[])
    assert agreement(tflite, float_model, digits.x_test) >= minimum
    if mode == "int8":
        assert float_ops(tflite) == []


def test_pcqat_keeps_sparsity_through_quantization_aware_training(pruned, digits):
    result, _ = pruned
    recipe = [{"step": "prune"}, {"step": "cluster"}]
    clustered = cluster_model(result.model, digits, ClusterConfig(model_uri=PARENT, epochs=1)).model
    tflite, sparsity = quantize(clustered, digits, QuantizeConfig(model_uri=PARENT, mode="qat", epochs=1), recipe)
    assert sparsity == pytest.approx(0.8, abs=0.01)
    assert agreement(tflite, clustered, digits.x_test) >= 0.97


@pytest.mark.parametrize(
    "steps, scheme",
    [([], "QAT"), (["prune"], "PQAT"), (["cluster"], "CQAT"), (["prune", "cluster"], "PCQAT"), (["quantize"], "QAT")],
)
def test_qat_scheme_follows_the_parent_recipe(steps, scheme):
    assert qat_scheme_name([{"step": s} for s in steps]) == scheme


def test_a_model_uri_that_does_not_exist_fails_naming_it(tracking, digits):
    with pytest.raises(ModelLoadError, match="cannot load a Keras model from 'runs:/0123456789abcdef/keras_model'"):
        load_parent("runs:/0123456789abcdef/keras_model", digits, robustness="off")


def test_a_deployable_is_refused_as_a_parent_keras_model(tracking, float_model, digits, tmp_path):
    with mlflow.start_run() as run:
        path = tmp_path / "model.tflite"
        path.write_bytes(to_tflite(float_model))
        log_litert_model(path, digits)
    with pytest.raises(ModelLoadError, match="cannot load a Keras model"):
        load_parent(f"runs:/{run.info.run_id}/{contract.LITERT_MODEL}", digits, robustness="off")


def test_a_parent_from_other_data_is_refused(tracking, float_model, digits, tmp_path):
    other = tmp_path / "other.npz"
    rng = np.random.default_rng(0)
    np.savez(
        other,
        x_train=rng.random((50, 8, 8)),
        y_train=np.arange(50) % 10,
        x_test=rng.random((20, 8, 8)),
        y_test=np.arange(20) % 10,
    )
    with mlflow.start_run() as run:
        log_dataset(digits)
        set_lineage_tags(Baseline(run.info.run_id, 0.98, 0.99, 700_000), [])
        log_keras_model(float_model, digits)
    with pytest.raises(ValueError, match="pass the dataset .* of its train run"):
        load_parent(f"runs:/{run.info.run_id}/{contract.KERAS_MODEL}", load_dataset(str(other)), robustness="off")


def test_a_model_file_parent_is_its_own_baseline(float_model, digits, tmp_path):
    path = tmp_path / "float.keras"
    float_model.save(path)
    parent = load_parent(str(path), digits, robustness="fast")
    assert parent.variant == "external" and parent.recipe == []
    assert parent.baseline.accuracy >= 0.97 and parent.baseline.gzip_bytes > 100_000
    # measured here, so its variants get robust drops and flip rates against it
    assert parent.baseline.robustness_mode == "fast" and 0 < parent.baseline.robust_accuracy < 1
    assert len(parent.baseline_predictions) == len(digits.y_test)
