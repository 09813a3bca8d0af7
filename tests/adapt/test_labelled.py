"""Labelled traffic to train on: each labelled input taken once, every refusal counted with its reason."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import numpy as np

from steps.adapt.labelled import NOT_A_CLASS, NOT_KEPT, WRONG_SHAPE, labelled_samples
from steps.monitoring.traffic import log_files, read
from steps.serve.predlog import PredictionLog
from steps.serve.runtime import ModelRef

CLASSES = ("cat", "dog", "emu")


SHAPE = (2, 2, 1)


MODEL = SimpleNamespace(ref=ModelRef("pets", "1", "champion", "run-1"), class_names=list(CLASSES), sample_shape=SHAPE)


OTHER_SHAPE = SimpleNamespace(
    ref=ModelRef("pets", "2", "champion", "run-2"), class_names=list(CLASSES), sample_shape=(3, 3, 1)
)


OTHER_MODEL = SimpleNamespace(
    ref=ModelRef("cars", "1", "champion", "run-9"), class_names=list(CLASSES), sample_shape=SHAPE
)


SOFTMAX = np.array([[0.6, 0.3, 0.1]], np.float32)


def image(value: float, shape=SHAPE) -> np.ndarray:
    return np.full((1, *shape), value, np.float32)


def write_log(path, log_inputs: float = 1.0) -> None:
    """Requests a-f of pets (f: another input shape), g of another model, each with feedback; a retried a."""

    async def serve():
        log = PredictionLog(path, "127.0.0.1:8080:1", log_inputs)
        try:
            for request_id, value in zip("abcde", (0.0, 0.2, 0.4, 0.6, 0.8)):
                await log.log_prediction(request_id, "invocations", MODEL, 1.0, 0.1, image(value), SOFTMAX)
            await log.log_prediction("a", "invocations", MODEL, 1.0, 0.1, image(0.0), SOFTMAX)  # a retry
            await log.log_prediction("f", "invocations", OTHER_SHAPE, 1.0, 0.1, image(1.0, (3, 3, 1)), SOFTMAX)
            await log.log_prediction("g", "invocations", OTHER_MODEL, 1.0, 0.1, image(1.0), SOFTMAX)
            for request_id, label in zip("abcdefg", ("cat", "dog", "emu", "yak", "dog", "cat", "cat")):
                await log.log_feedback(request_id, 0, label)
        finally:
            log.close()

    asyncio.run(serve())


def test_labelled_traffic_takes_each_labelled_input_once_and_counts_every_refusal(tmp_path):
    write_log(tmp_path / "p.db")
    labelled = labelled_samples(read(log_files(str(tmp_path / "p.db"))), "pets", CLASSES, SHAPE)
    # b, c, e, then the retried a (once, at its last attempt); d's 'yak' refused, f another shape, g another model
    assert labelled.y.tolist() == [1, 2, 1, 0]
    assert np.allclose(labelled.x[:, 0, 0, 0], [0.2, 0.4, 0.8, 0.0], atol=0.5 / 255)
    assert labelled.refused == {NOT_A_CLASS: 1, WRONG_SHAPE: 1}
    assert labelled.describe() == (f"4 labelled samples taken (1 refused: {NOT_A_CLASS}; 1 refused: {WRONG_SHAPE})")


def test_inputs_the_server_did_not_keep_are_refused_and_counted(tmp_path):
    write_log(tmp_path / "p.db", log_inputs=0.5)
    labelled = labelled_samples(read(log_files(str(tmp_path / "p.db"))), "pets", CLASSES, SHAPE)
    assert labelled.refused[NOT_KEPT] >= 2 and len(labelled.y) + sum(labelled.refused.values()) == 6
