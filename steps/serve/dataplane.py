"""The data plane: the one place a prediction is made, timed and logged, whatever protocol asked for it.

Handlers (today's HTTP ones in `app`; the Open Inference Protocol's REST and
gRPC ones to come) only translate: a request into a call here, the result
into their format. A request takes the served model once, when it starts: its
input is shaped for that model, and it finishes on that version even if the
alias moves meanwhile.
"""

from __future__ import annotations

import itertools
import time
import uuid
from dataclasses import dataclass
from typing import Callable

import numpy as np

from steps.serve.batching import InferenceEngine
from steps.serve.errors import BadRequest, NotFound, Unavailable
from steps.serve.metrics import ServerMetrics
from steps.serve.predlog import PredictionLog, input_summary, top_labels
from steps.serve.reload import ModelHolder
from steps.serve.runtime import ServedModel
from steps.settings import ServeConfig

Decode = Callable[[tuple[int, ...]], np.ndarray]  # a request's input -> a float32 batch for a model's sample shape
MAX_REQUEST_ID_LENGTH = 200


@dataclass(frozen=True)
class Inference:
    model: ServedModel  # the version that made it
    probabilities: np.ndarray  # (n, n_classes)


class Admission:
    """Bounds the prediction requests in progress: past the limit, 503 instead of a queue without end."""

    def __init__(self, limit: int):
        self.limit = limit
        self.in_flight = 0

    def __enter__(self) -> None:
        if self.in_flight >= self.limit:
            raise Unavailable(f"the server is at capacity ({self.limit} requests in progress); retry shortly")
        self.in_flight += 1

    def __exit__(self, *exc_info) -> None:
        self.in_flight -= 1


class DataPlane:
    def __init__(
        self,
        config: ServeConfig,
        models: ModelHolder,
        engine: InferenceEngine,
        predlog: PredictionLog,
        metrics: ServerMetrics,
    ):
        self.config = config
        self.models = models
        self.engine = engine
        self.predlog = predlog
        self.admission = Admission(config.max_queue)  # `with plane.admission:` around a prediction request
        metrics.in_flight.set_function(lambda: self.admission.in_flight)
        # Request ids unique across restarts at a counter's cost, not uuid4's.
        self._request_prefix = uuid.uuid4().hex[:12]
        self._request_numbers = itertools.count(1)

    def request_id(self, given: str | None) -> str:
        """The client's id for its request (checked: it is logged and echoed), or a new one."""
        if not given:
            return f"{self._request_prefix}-{next(self._request_numbers):x}"
        if len(given) > MAX_REQUEST_ID_LENGTH or not (given.isascii() and given.isprintable()) or " " in given:
            shown = given[:40] + ("..." if len(given) > 40 else "")
            raise BadRequest(
                f"X-Request-Id {shown!r} is not 1 to {MAX_REQUEST_ID_LENGTH} visible ASCII characters; "
                "send such an id, or none and use the one the answer carries"
            )
        return given

    def model(self) -> ServedModel:
        model = self.models.current
        if model is None:
            reason = self.models.last_error or "loading"
            raise Unavailable(f"no model is loaded yet ({reason}); retry shortly")
        return model

    async def infer(self, decode: Decode, endpoint: str, request_id: str) -> Inference:
        """Shape the input for the served model, run it (batched with others if configured), log it.

        Returns once the prediction is committed to the log; latency_ms in the
        log counts from here to the model's answer (decoding, queueing, invocation).
        """
        start = time.perf_counter()
        model = self.model()
        batch = decode(model.sample_shape)
        probabilities = await self.engine.predict(model, batch)
        latency_ms = (time.perf_counter() - start) * 1000
        label, probability = top_labels(probabilities, model.class_names)
        await self.predlog.log_prediction(
            request_id, endpoint, model.ref, latency_ms, input_summary(batch), label, probability
        )
        return Inference(model, probabilities)

    async def feedback(self, request_id: str, label: str) -> None:
        """Record the true label of a logged prediction (of every prediction with that id, for a retried one)."""
        model = self.models.current
        if model is not None and label not in model.class_names:
            raise BadRequest(f"label {label!r} is not a class of the model; classes: {', '.join(model.class_names)}")
        if not self.predlog.has_prediction(request_id):
            raise NotFound(f"no prediction with request id {request_id!r} is logged")
        await self.predlog.log_feedback(request_id, label)

    def version(self) -> dict:
        """What is served, from where, and how following the alias goes."""
        model = self.model()
        return {
            "name": model.ref.name,
            "version": model.ref.version,
            "alias": model.ref.alias,
            "run_id": model.ref.run_id,
            "model_uri": self.config.model_uri,
            "loaded_at": model.loaded_at,
            "last_error": self.models.last_error,
            "fetch_peak_rss_bytes": self.models.fetch_peak_rss_bytes,
        }
