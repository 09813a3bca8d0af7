"""A real prediction log as a server leaves it, written by the server's own PredictionLog."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import numpy as np

from steps import contract
from steps.serve.predlog import PredictionLog
from steps.serve.runtime import ModelRef

NAMES = ("a", "b", "c")  # the served model's classes
MODEL = SimpleNamespace(
    ref=ModelRef(contract.DEFAULT_MODEL_NAME, "3", contract.CHAMPION, "run-3"),
    class_names=list(NAMES),
    sample_shape=(2, 2, 1),
)


IMAGES = np.linspace(0, 1, 3 * 4, dtype=np.float32).reshape(3, 2, 2, 1)


SOFTMAX = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]], np.float32)


def served_log(path, replica: str = "127.0.0.1:8080:1") -> None:
    """A log as a server leaves it: a heartbeat, a batch of 3 and a single prediction, a refusal, feedback."""

    async def serve():
        log = PredictionLog(path, replica)
        try:
            await log.log_heartbeat(2**27, MODEL.ref, 0, 0)
            await log.log_prediction("batch", "invocations", MODEL, 3.0, 0.5, IMAGES, SOFTMAX)
            await log.log_prediction("single", "predict", MODEL, 2.0, 0.4, IMAGES[2:], SOFTMAX[2:])
            log.log_refusal("invocations", 400, "BAD_REQUEST", "bad")
            await log.log_feedback("batch", 1, "b")
            await log.log_feedback("single", 0, "a")
        finally:
            log.close()

    asyncio.run(serve())
