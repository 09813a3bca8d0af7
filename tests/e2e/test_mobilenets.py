"""The mobilenets at test size (32 px, three easy classes of `shapes`): a new one learns (its BatchNorm
statistics with it), QAT and PCQAT accept its normalisation layer, and a user's own nested MobileNetV2 goes
from a folder of mixed-size JPEGs through `main` to a champion that `/predict` serves a JPEG of another size."""

from __future__ import annotations

import io
import json

import mlflow
import numpy as np
import pytest
import tf_keras as keras
from PIL import Image

from steps import contract
from steps.compress.compression import cluster_model, prune_model, quantization_aware_model
from steps.datasets import shapes
from steps.datasets.data import load_dataset
from steps.modeling.architectures import build_model
from steps.modeling.convert import to_tflite
from steps.modeling.litert_runtime import LiteRTClassifier
from steps.modeling.training import train
from steps.settings import FROM_SCRATCH_RATE, ClusterConfig, PruneConfig, QuantizeConfig, TrainConfig
from tests.support.commands import entry_point_runs, mlflow_run
from tests.support.server_process import ServerProcess
from tests.support.tflite_graph import float_ops

pytestmark = pytest.mark.e2e

EASY = ("circle", "square", "stripes")
SIDE = 32
# A new MobileNetV2 on a few hundred images: at 0.001 it learns them by heart and stays near 55% on others;
# at 0.01 (learning_rate=auto's choice for a mobilenet built here) it generalises (97% validation here)


@pytest.fixture(scope="module")
def easy_shapes(tmp_path_factory):
    """300 images of three easy classes at 32 px, as a user's .npz."""
    images, labels = shapes.generate_shapes(SIDE, per_class=100, classes=EASY, clutter=0, colour_coded=True)
    path = tmp_path_factory.mktemp("shapes") / "easy-shapes.npz"
    order = np.random.default_rng(0).permutation(len(labels))
    cut = len(labels) * 4 // 5
    np.savez(
        path,
        x_train=images[order[:cut]],
        y_train=labels[order[:cut]],
        x_test=images[order[cut:]],
        y_test=labels[order[cut:]],
        class_names=np.array(EASY),
    )
    return load_dataset(str(path))


@pytest.fixture(scope="module")
def trained_mobilenet(easy_shapes):
    config = TrainConfig(architecture="mobilenetv2", epochs=20, patience=5)  # learning_rate=auto
    assert config.step_size() == FROM_SCRATCH_RATE
    model = build_model(config.architecture, easy_shapes.input_shape, easy_shapes.n_classes, config.width)
    return train(config, easy_shapes, model)


def test_a_new_mobilenetv2_learns_its_batchnorm_statistics_and_classifies_above_chance(trained_mobilenet):
    # Under the mobilenets' own momentum (0.999) it stayed at one class (val_loss ln 3) whatever it learnt.
    assert trained_mobilenet.keras_accuracy >= 0.8
    assert max(trained_mobilenet.history["val_accuracy"]) >= 0.8


def test_qat_and_pcqat_accept_the_normalisation_layer_and_give_int8_deployables(trained_mobilenet, easy_shapes):
    parent = trained_mobilenet.model
    before = [weights.copy() for weights in parent.get_weights()]
    short = {"model_uri": "parent", "epochs": 1}
    qat = quantization_aware_model(parent, easy_shapes, QuantizeConfig(**short, mode="qat"), "QAT")
    assert _accuracy(qat.predict(easy_shapes.x_test, verbose=0), easy_shapes) >= 0.7
    # PCQAT: the same annotation on a pruned and clustered copy, through the converter to an int8 deployable
    pruned = prune_model(parent, easy_shapes, PruneConfig(**short, target_sparsity=0.5)).model
    clustered = cluster_model(pruned, easy_shapes, ClusterConfig(**short, n_clusters=16)).model
    pcqat = quantization_aware_model(clustered, easy_shapes, QuantizeConfig(**short, mode="qat"), "PCQAT")
    tflite = to_tflite(pcqat, "int8", easy_shapes.representative())
    assert float_ops(tflite) == []  # fully integer, the normalisation layer included
    deployable = LiteRTClassifier(tflite)
    assert _accuracy(deployable.predict_proba(easy_shapes.x_test), easy_shapes) >= 0.7
    for mine, kept in zip(parent.get_weights(), before):  # the parent is untouched
        np.testing.assert_array_equal(mine, kept)


def _accuracy(probabilities: np.ndarray, data) -> float:
    return float((probabilities.argmax(axis=1) == data.y_test).mean())


def _jpeg(image: np.ndarray, side: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).resize((side, side), Image.Resampling.BILINEAR).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def test_a_users_nested_mobilenetv2_goes_from_jpegs_through_main_to_a_served_champion(session_store, tmp_path):
    images, labels = shapes.generate_shapes(64, per_class=100, classes=EASY, clutter=0, colour_coded=True)
    sizes = np.random.default_rng(1).choice([40, 48, 64, 80], len(labels))  # a folder of mixed sizes
    for index, (image, label, size) in enumerate(zip(images, labels, sizes)):
        folder = tmp_path / "photos" / EASY[label]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{index}.jpg").write_bytes(_jpeg(image, int(size)))
    backbone = keras.applications.MobileNetV2(input_shape=(SIDE, SIDE, 3), alpha=0.35, include_top=False, weights=None)
    users_model = keras.Sequential(  # the transfer-learning shape: an application model inside
        [
            keras.Input((SIDE, SIDE, 3)),
            backbone,
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3, "softmax"),
        ]
    )
    users_model.save(tmp_path / "mine.keras")

    result = mlflow_run(
        *("-P", f"base_model={tmp_path / 'mine.keras'}", "-P", f"dataset={tmp_path / 'photos'}"),
        # a base_model gets auto's fine-tuning rate (0.001); this one is untrained, so it is given the other
        *("-P", f"image_size={SIDE}", "-P", f"learning_rate={FROM_SCRATCH_RATE}", "-P", "epochs=20"),
        *("-P", "variants=int8,pruned-int8"),
        # the gate's floor is this test's bar (300 photos; 90% is a coin toss on 60 test images)
        *("-P", "model_name=my-shapes", "-P", "max_accuracy_drop=0.05", "-P", "min_accuracy=0.8"),
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    champion = mlflow.MlflowClient().get_model_version_by_alias("my-shapes", contract.CHAMPION)
    assert float(mlflow.get_run(champion.run_id).data.metrics[contract.ACCURACY]) >= 0.8
    (main,) = [run for run in entry_point_runs(contract.MAIN) if run.data.params.get("model_name") == "my-shapes"]
    register = mlflow.get_run(main.data.tags[contract.TAG_STEP_RUN.format(step=contract.REGISTER)])
    assert register.data.params["min_accuracy"] == "0.8"  # main's gate floor is the one register applied

    server = ServerProcess("models:/my-shapes@champion", tmp_path / "predictions.db")
    try:
        status, _, body = server.request("POST", "/predict", _jpeg(images[labels == 2][0], 120), "image/jpeg")
        answer = json.loads(body)
        assert status == 200, answer
        assert answer["label"] == "stripes" and set(answer["probabilities"]) == set(EASY)
    finally:
        server.stop()
