"""/predict preprocesses an image as training did: its probabilities equal the logged pyfunc's on pixels
computed here by hand, for the image kinds clients send (gray, colour, JPEG, RGBA, 16-bit gray).

Two tiny LiteRT deployables are logged with `log_litert_model` into a private
sqlite MLflow store, served in-process from it (fetched in the test process,
not a child), and loaded back with `mlflow.pyfunc.load_model`.
"""

from __future__ import annotations

import io
import json

import mlflow
import numpy as np
import pytest
from PIL import Image

from steps.datasets.data import Dataset
from steps.release.tracking import log_litert_model
from tests.support.serving import (
    COLOUR_CLASSES,
    COLOUR_SHAPE,
    GRAY_CLASSES,
    GRAY_SHAPE,
    InProcessServer,
    MlflowInProcess,
    tiny_tflite,
)
from tests.support.stores import store_in

RNG = np.random.default_rng(7)


def tiny_dataset(shape: tuple[int, int, int], class_names: list[str]) -> Dataset:
    """Just enough data for the deployable's signature and input example."""
    x = RNG.random((4, *shape), dtype=np.float32)
    y = np.arange(4) % len(class_names)
    return Dataset("tiny", "made in the test", x, y, x, y, x, y, tuple(class_names))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """models:/gray@champion (8x8x1, 10 classes) and models:/colour@champion (8x8x3, 3 classes)."""
    folder = tmp_path_factory.mktemp("store")
    with pytest.MonkeyPatch.context() as monkeypatch, store_in(folder, monkeypatch) as uri:
        client = mlflow.MlflowClient()
        for name, shape, classes in [("gray", GRAY_SHAPE, GRAY_CLASSES), ("colour", COLOUR_SHAPE, COLOUR_CLASSES)]:
            path = folder / f"{name}.tflite"
            path.write_bytes(tiny_tflite(shape, len(classes)))
            with mlflow.start_run():
                model_uri = log_litert_model(path, tiny_dataset(shape, classes))
            version = mlflow.register_model(model_uri, name).version
            client.set_registered_model_alias(name, "champion", version)
        yield uri


@pytest.fixture(scope="module")
def served(store, tmp_path_factory):
    """name -> (in-process server of models:/name@champion, its pyfunc)."""
    folder = tmp_path_factory.mktemp("serve")
    servers = {
        name: (
            InProcessServer(MlflowInProcess, folder / f"{name}.db", model_uri=f"models:/{name}@champion"),
            mlflow.pyfunc.load_model(f"models:/{name}@champion"),
        )
        for name in ("gray", "colour")
    }
    yield servers
    for server, _ in servers.values():
        server.stop()


def encode(pixels: np.ndarray, format: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=format)
    return buffer.getvalue()


def luma(rgb: np.ndarray) -> np.ndarray:
    return (rgb @ np.array([0.299, 0.587, 0.114]))[..., np.newaxis]


GRAY = RNG.integers(0, 256, (8, 8), dtype=np.uint8)
RGB = RNG.integers(0, 256, (8, 8, 3), dtype=np.uint8)
RGBA = RNG.integers(0, 256, (8, 8, 4), dtype=np.uint8)
GRAY16 = RNG.integers(0, 65536, (8, 8), dtype=np.uint16)
GRAY_JPEG = encode(GRAY, "JPEG")


@pytest.mark.parametrize(
    "model, image, pixels",
    [
        ("gray", encode(GRAY), GRAY[..., np.newaxis] / 255),
        ("gray", encode(RGB), luma(RGB / 255)),
        ("gray", GRAY_JPEG, np.asarray(Image.open(io.BytesIO(GRAY_JPEG)))[..., np.newaxis] / 255),
        ("gray", encode(RGBA), luma(RGBA[..., :3] / 255)),
        ("gray", encode(GRAY16), GRAY16[..., np.newaxis] / 65535),
        ("colour", encode(RGB), RGB / 255),
        ("colour", encode(GRAY), np.repeat(GRAY[..., np.newaxis] / 255, 3, axis=-1)),
    ],
    ids=[
        "gray-png",
        "colour-png-to-gray-model",
        "jpeg",
        "rgba-png",
        "16-bit-gray-png",
        "colour-to-colour-model",
        "gray-to-colour-model",
    ],
)
def test_predict_gives_the_pyfunc_probabilities_of_the_same_pixels(served, model, image, pixels):
    server, pyfunc = served[model]
    status, _, body = server.request("POST", f"/predict?k={len(server.plane.model().class_names)}", image)
    assert status == 200, body
    answer = json.loads(body)
    expected = pyfunc.predict(pixels[np.newaxis].astype(np.float32))[0]
    classes = server.plane.model().class_names
    np.testing.assert_allclose([answer["probabilities"][name] for name in classes], expected, rtol=1e-5, atol=1e-6)
    assert answer["label"] == classes[int(np.argmax(expected))]


def test_the_16_bit_case_would_catch_clamped_pixels(served):
    """Pillow's convert("L") clamps 16-bit values at 255: the model must answer such pixels differently."""
    _, pyfunc = served["gray"]
    scaled = (GRAY16 / 65535)[np.newaxis, ..., np.newaxis].astype(np.float32)
    clamped = (np.minimum(GRAY16, 255) / 255)[np.newaxis, ..., np.newaxis].astype(np.float32)
    assert not np.allclose(pyfunc.predict(scaled), pyfunc.predict(clamped), rtol=1e-5, atol=1e-6)
