"""The data plane: the one place a prediction is made, timed and logged, whatever protocol asked for it.

Handlers (MLflow's scoring protocol and the server's own in `app`, the Open
Inference Protocol's REST and gRPC ones in `oip`) only translate: a request into a call here, the result
into their format, and every answer they give into `answered` (refusals are
logged, requests counted). A request takes the served model once, when it
starts: its input is shaped for that model, and it finishes on that version
even if the alias moves meanwhile.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import resource
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Callable

import numpy as np

from steps.modeling.explain import Explanation, occlusion_map
from steps.serve.batching import InferenceEngine
from steps.serve.errors import BadRequest, NotFound, Unavailable
from steps.serve.metrics import ServerMetrics
from steps.serve.predlog import PredictionLog
from steps.serve.reload import ModelHolder
from steps.serve.runtime import ServedModel
from steps.settings import ServeConfig

Decode = Callable[[tuple[int, ...]], np.ndarray]  # a request's input -> a float32 batch for a model's sample shape
MAX_REQUEST_ID_LENGTH = 200
STAGES = ("decode", "queue", "invoke", "log")  # what `infer` times when stage timings are on (metrics.StageTimes)


@dataclass(frozen=True)
class Inference:
    model: ServedModel  # the version that made it
    probabilities: np.ndarray  # (n, n_classes)


class Admission:
    """Bounds the requests of one kind in progress: past the limit, 503 instead of a queue without end."""

    def __init__(self, limit: int, refusal: str = "the server is at capacity ({limit} requests in progress)"):
        self.limit = limit
        self.refusal = refusal
        self.in_flight = 0

    def __enter__(self) -> None:
        if self.in_flight >= self.limit:
            raise Unavailable(f"{self.refusal.format(limit=self.limit)}; retry shortly")
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
        self.stages = metrics.stages  # None unless stage timings were asked for (metrics.STAGE_TIMINGS_ENV)
        self.admission = Admission(config.max_queue)  # `with plane.admission:` around a prediction request
        # An explanation costs dozens of model calls: a few at a time, so predictions keep the cores; a few more
        # wait their turn (answering a flood of clients with instant 503s would itself take the event loop).
        self.explain_admission = Admission(
            config.explain_concurrency + config.explain_queue,
            "{limit} explanation(s) are being computed or waiting (explain_concurrency + explain_queue)",
        )
        self._explaining = asyncio.Semaphore(config.explain_concurrency)
        metrics.in_flight.set_function(lambda: self.admission.in_flight)
        # Request ids unique across restarts at a counter's cost, not uuid4's.
        self._request_prefix = uuid.uuid4().hex[:12]
        self._request_numbers = itertools.count(1)
        self.requests_total = 0  # answered since start, any endpoint and status (heartbeats carry it)

    def request_id(self, given: str | None) -> str:
        """The client's id for its request (checked: it is logged and echoed), or a new one."""
        if not given:
            return f"{self._request_prefix}-{next(self._request_numbers):x}"
        if len(given) > MAX_REQUEST_ID_LENGTH or not (given.isascii() and given.isprintable()) or " " in given:
            shown = given[:40] + ("..." if len(given) > 40 else "")
            raise BadRequest(
                f"request id {shown!r} is not 1 to {MAX_REQUEST_ID_LENGTH} visible ASCII characters; send such an "
                "id (X-Request-Id, or an inference request's id), or none and use the one the answer carries"
            )
        return given

    def model(self) -> ServedModel:
        model = self.models.current
        if model is None:
            reason = self.models.last_error or "loading"
            raise Unavailable(f"no model is loaded yet ({reason}); retry shortly")
        return model

    async def infer(
        self, decode: Decode, endpoint: str, request_id: str, model: ServedModel | None = None
    ) -> Inference:
        """Shape the input for the served model (or the one the request already took), run it (batched with
        others if configured), log it.

        Returns once the prediction is committed to the log; latency_ms in the
        log counts from here to the model's answer (decoding, queueing, invocation).
        """
        start = time.perf_counter()
        model = model or self.model()
        batch = decode(model.sample_shape)
        decoded = time.perf_counter()
        probabilities, inference_seconds = await self.engine.predict(model, batch)
        answered = time.perf_counter()
        await self.predlog.log_prediction(
            request_id, endpoint, model, (answered - start) * 1000, inference_seconds * 1000, batch, probabilities
        )
        if self.stages is not None:
            logged = time.perf_counter()
            queued = answered - decoded - inference_seconds
            for stage, seconds in zip(STAGES, (decoded - start, queued, inference_seconds, logged - answered)):
                self.stages.note(endpoint, stage, seconds)
        return Inference(model, probabilities)

    async def explain(self, decode: Decode | None, logged: tuple[str, int] | None) -> tuple[ServedModel, Explanation]:
        """Occlusion saliency of one sample (`decode`d, or the input the log kept for a prediction) on the served
        model, computed in a worker thread: the event loop keeps answering predictions meanwhile."""
        model = self.model()
        if logged is not None:
            image = self.predlog.input_of(*logged)
            if image is None:
                raise NotFound(
                    f"no input is logged for sample {logged[1]} of request {logged[0]!r} (unknown id, or not among the "
                    "log_inputs share of requests whose inputs are kept); send the sample itself"
                )
            if image.shape != model.sample_shape:
                raise BadRequest(
                    f"request {logged[0]!r} was answered by a model taking {image.shape}; the one served now takes "
                    f"{model.sample_shape}: send the sample itself"
                )
        else:
            batch = decode(model.sample_shape)
            if len(batch) != 1:
                raise BadRequest(f"an explanation is of one sample; got {len(batch)}: send them one by one")
            image = batch[0]
        async with self._explaining:
            return model, await asyncio.to_thread(occlusion_map, model.classifier.predict_proba, image)

    async def feedback(self, request_id: str, label: str, index: int = 0) -> None:
        """Record the true label of sample `index` of a logged prediction (of every prediction with that id,
        for a retried one)."""
        model = self.models.current
        if model is not None and label not in model.class_names:
            raise BadRequest(f"label {label!r} is not a class of the model; classes: {', '.join(model.class_names)}")
        samples = self.predlog.samples_of(request_id)
        if samples is None:
            raise NotFound(f"no prediction with request id {request_id!r} is logged")
        if index >= samples:
            raise BadRequest(
                f"index {index} is out of range: request {request_id!r} had {samples} sample(s); "
                f"send an index from 0 to {samples - 1}"
            )
        await self.predlog.log_feedback(request_id, index, label)

    def answered(self, endpoint: str, status: int, kind: str | None, request_id: str | None) -> None:
        """Every answer, by any protocol: counted, and logged as a refusal if it is an error."""
        self.requests_total += 1
        if status >= 400:
            self.predlog.log_refusal(endpoint, status, kind or f"HTTP_{status}", request_id)

    async def heartbeat(self) -> None:
        """Log the server's memory, model and load (the server calls this every few seconds, at start and stop)."""
        model = self.models.current
        await self.predlog.log_heartbeat(
            rss_bytes(), model.ref if model else None, self.admission.in_flight, self.requests_total
        )

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
            "registry_reachable": self.models.registry_reachable,
            "fetch_peak_rss_bytes": self.models.fetch_peak_rss_bytes,
        }


def rss_bytes() -> int:
    """This process's resident memory now (Linux); elsewhere its peak, the nearest the platform tells."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024  # bytes there, kilobytes elsewhere
