"""`train` as users run it: `mlflow run -e train` with another optimizer, a bad value refused before training,
a user's .npz and image folder without code changes, fine-tuning a saved model from its weights."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
from PIL import Image

from steps import contract
from steps.datasets.data import load_dataset
from steps.modeling.architectures import build_model
from steps.modeling.keras_io import initial_model
from steps.modeling.training import train
from steps.settings import TrainConfig
from steps.train import main
from tests.support.commands import mlflow_run

pytestmark = pytest.mark.e2e

TINY = ["--epochs", "2", "--width", "4"]


def _only_run():
    (run,) = mlflow.search_runs(search_all_experiments=True, output_format="list")
    return run


def test_mlflow_run_train_with_sgd(session_store):
    result = mlflow_run("-e", "train", "-P", "optimizer=sgd", "-P", "learning_rate=0.05", "-P", "epochs=3")
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = mlflow.search_runs(
        search_all_experiments=True, filter_string="params.optimizer = 'sgd'", output_format="list"
    )
    assert run.data.params["learning_rate"] == "0.05" and run.data.metrics[contract.EPOCHS_TRAINED] <= 3


def test_unknown_optimizer_fails_before_training_and_lists_the_valid_ones(session_store):
    result = mlflow_run("-e", "train", "-P", "optimizer=adamw")
    assert result.returncode != 0
    assert "optimizer='adamw' is not valid; use one of: sgd, momentum, rmsprop, adam" in result.stderr
    assert "Epoch 1/" not in result.stdout


def test_train_on_a_user_npz_without_code_changes(tracking, tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "shapes.npz"
    np.savez(
        path,
        x_train=rng.integers(0, 256, (80, 12, 12, 3), dtype=np.uint8),
        y_train=np.arange(80) % 4,
        x_test=rng.integers(0, 256, (20, 12, 12, 3), dtype=np.uint8),
        y_test=np.arange(20) % 4,
    )
    main(["--dataset", str(path), *TINY])
    run = _only_run()
    assert run.info.status == "FINISHED"
    assert {d.dataset.name for d in run.inputs.dataset_inputs} == {"shapes"}
    assert run.inputs.dataset_inputs[0].dataset.source and str(path) in run.inputs.dataset_inputs[0].dataset.source
    assert contract.ACCURACY in run.data.metrics and run.data.metrics[contract.AGREEMENT] >= 0.95
    assert run.data.metrics[contract.PEAK_RSS_MB] > 100  # TensorFlow alone takes more: the process's, in MB


def test_train_on_an_image_folder_without_code_changes(tracking, tmp_path):
    rng = np.random.default_rng(0)
    for label in ("circle", "square"):
        (tmp_path / "images" / label).mkdir(parents=True)
        for i in range(10):
            Image.fromarray(rng.integers(0, 256, (20, 20), dtype=np.uint8)).save(
                tmp_path / "images" / label / f"{i}.png"
            )
    main(["--dataset", str(tmp_path / "images"), "--image_size", "16", *TINY])
    run = _only_run()
    assert run.info.status == "FINISHED" and run.data.params["image_size"] == "16"
    litert = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/{contract.LITERT_MODEL}")
    assert litert.predict(np.zeros((3, 16, 16, 1), np.float32)).shape == (3, 2)


def test_fine_tuning_a_saved_model_starts_from_its_weights(tmp_path):
    data = load_dataset("digits")
    base = build_model("cnn", data.input_shape, data.n_classes, width=4)
    base.compile("adam", "sparse_categorical_crossentropy")
    base.fit(data.x_train, data.y_train, epochs=3, verbose=0)
    path = tmp_path / "base.keras"
    base.save(path)
    config = TrainConfig(base_model=str(path), epochs=1, learning_rate=1e-9)
    trained = train(config, data, initial_model(config, data))
    # A vanishing learning rate leaves the weights where the base model had them.
    for mine, theirs in zip(trained.model.get_weights(), base.get_weights()):
        np.testing.assert_allclose(mine, theirs, atol=1e-5)
