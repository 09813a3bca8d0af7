"""A base model that cannot be used (missing, corrupt, another input shape or class count) is refused, saying why."""

from __future__ import annotations

import pytest
import tf_keras as keras

from steps.datasets.data import load_dataset
from steps.modeling.architectures import build_model
from steps.modeling.keras_io import ModelLoadError, initial_model
from steps.settings import TrainConfig


@pytest.mark.parametrize(
    "make_base, message",
    [
        (lambda p: str(p / "missing.keras"), "cannot load a Keras model"),  # the CLI says "does not exist" first
        (lambda p: _write(p / "corrupt.h5", b"not hdf5"), "cannot load a Keras model"),
        (lambda p: _save(p / "wrong_shape.keras", build_model("cnn", (10, 10, 1), 10, 4)), "takes inputs"),
        (lambda p: _save(p / "wrong_classes.keras", build_model("cnn", (8, 8, 1), 3, 4)), "predicts 3 classes"),
    ],
    ids=["missing", "corrupt", "input-shape", "classes"],
)
def test_unusable_base_model_fails_with_the_reason(tmp_path, make_base, message):
    with pytest.raises(ModelLoadError, match=message):
        initial_model(TrainConfig(base_model=make_base(tmp_path), epochs=1), load_dataset("digits"))


def _write(path, content: bytes) -> str:
    path.write_bytes(content)
    return str(path)


def _save(path, model: keras.Model) -> str:
    model.save(path)
    return str(path)
