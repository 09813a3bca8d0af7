"""HTTP only: routes, request ids, body limits, and errors turned into JSON in one place."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import logging
import time
import uuid
from dataclasses import dataclass

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from steps.serve import protocol
from steps.serve.batching import InferenceEngine
from steps.serve.errors import BadRequest, NotFound, PayloadTooLarge, ServeError, Unavailable
from steps.serve.metrics import ServerMetrics
from steps.serve.predlog import PredictionLog
from steps.serve.reload import AliasFollower, ModelHolder
from steps.serve.runtime import ServedModel

log = logging.getLogger("rtdeploy.serve")
RETRY_AFTER_SECONDS = "1"


@dataclass(frozen=True)
class ServerSettings:
    model_uri: str
    poll_seconds: float
    max_batch_size: int
    max_batch_wait_ms: float
    max_queue: int
    max_body_bytes: int
    prediction_log: str


class Server:
    """The parts one server is made of; the Starlette app is built around it."""

    def __init__(self, settings: ServerSettings):
        self.settings = settings
        self.metrics = ServerMetrics()
        self.holder = ModelHolder()
        self.engine = InferenceEngine(self.metrics, settings.max_batch_size, settings.max_batch_wait_ms)
        self.in_flight = 0  # prediction requests admitted and not yet answered
        self.metrics.in_flight.set_function(lambda: self.in_flight)
        self.follower = AliasFollower(settings.model_uri, self.holder, self.engine, self.metrics, settings.poll_seconds)
        self.predlog = PredictionLog(settings.prediction_log)  # opened first: a bad file stops the start
        # Request ids unique across restarts (they key the prediction log) at a counter's cost, not uuid4's.
        self._request_prefix = uuid.uuid4().hex[:12]
        self._request_numbers = itertools.count(1)

    def new_request_id(self) -> str:
        return f"{self._request_prefix}-{next(self._request_numbers):x}"

    def model(self) -> ServedModel:
        model = self.holder.current
        if model is None:
            reason = self.holder.last_error or "loading"
            raise Unavailable(f"no model is loaded yet ({reason}); retry shortly")
        return model

    async def admitted(self, handler, request: Request, request_id: str) -> Response:
        """Bound the requests in progress: past max_queue answer 503 instead of queueing without limit."""
        if self.in_flight >= self.settings.max_queue:
            raise Unavailable(
                f"the server is at capacity ({self.settings.max_queue} requests in progress); retry shortly"
            )
        self.in_flight += 1
        try:
            return await handler(request, request_id)
        finally:
            self.in_flight -= 1

    @contextlib.asynccontextmanager
    async def lifespan(self, app):
        self.engine.bind(asyncio.get_running_loop())
        self.follower.check_once()  # not there yet or broken: serve 503 and keep polling
        self.follower.start()
        # Everything imported and loaded so far (the app, numpy, LiteRT, the model) lives as long as the
        # server: keep it out of the cyclic GC, whose full passes over it stalled requests ~80 ms.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            self.follower.stop()
            self.engine.close()
            self.predlog.close()


def header(request: Request, name: bytes) -> str | None:
    """One request header (name in lower case), without building Starlette's Headers: the hot path's way."""
    for key, value in request.scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed limit (declared or as it streams in)."""
    declared = header(request, b"content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body of {declared} bytes is over the {limit}-byte limit; send smaller batches")
    chunks, size = [], 0
    while True:  # ASGI messages read directly: Starlette's stream() generator costs more than the parse
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise BadRequest("the client disconnected before the body was complete")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body is over the {limit}-byte limit; send smaller batches")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def prediction_response(body: bytes, model: ServedModel) -> Response:
    """A prediction's JSON, headed with the version that made it."""
    response = Response(body, media_type="application/json")
    response.raw_headers.append((b"x-model-version", model.ref.version.encode()))
    return response


def build_app(server: Server) -> Starlette:
    def endpoint(name: str, handler, admit: bool = False):
        """Request id, timing, metrics, admission (predictions), and the one place where errors become JSON."""

        async def wrapped(request: Request) -> Response:
            start = time.perf_counter()
            request_id = header(request, b"x-request-id") or server.new_request_id()
            try:
                if admit:
                    response = await server.admitted(handler, request, request_id)
                else:
                    response = await handler(request, request_id)
            except Exception as error:
                if not isinstance(error, ServeError):  # a bug of ours, never the client's: logged with its traceback
                    log.exception("internal error on %s", name)
                    error = ServeError("internal server error")
                response = JSONResponse(error.as_json(), status_code=error.status)
                if isinstance(error, Unavailable):
                    response.headers["Retry-After"] = RETRY_AFTER_SECONDS
                kind = error.kind
            else:
                kind = None
            response.raw_headers.append((b"x-request-id", request_id.encode("latin-1")))
            server.metrics.observe_request(name, response.status_code, time.perf_counter() - start, kind)
            return response

        return wrapped

    async def invocations(request: Request, request_id: str) -> Response:
        start = time.perf_counter()
        model = server.model()
        body = await read_body(request, server.settings.max_body_bytes)
        batch = protocol.parse_invocation(body, header(request, b"content-type"), model.sample_shape)
        probabilities = await server.engine.predict(model, batch)
        labels, confidence = protocol.top_labels(probabilities, model.class_names)
        await server.predlog.log_prediction(
            request_id,
            "invocations",
            model.ref,
            (time.perf_counter() - start) * 1000,
            protocol.input_summary(batch),
            labels,
            confidence,
        )
        return prediction_response(protocol.format_predictions(probabilities), model)

    async def predict(request: Request, request_id: str) -> Response:
        start = time.perf_counter()
        model = server.model()
        if protocol.media_type(request.headers.get("content-type")) == "multipart/form-data":
            form = await request.form(max_part_size=server.settings.max_body_bytes)
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise BadRequest('multipart body needs the image in a field named "file"')
            data = await upload.read()
        else:
            data = await read_body(request, server.settings.max_body_bytes)
        batch = protocol.image_to_input(data, model.sample_shape)
        probabilities = (await server.engine.predict(model, batch))[0]
        k = _int_query(request, "k", 3)
        ranked = protocol.top_k(probabilities, model.class_names, k)
        await server.predlog.log_prediction(
            request_id,
            "predict",
            model.ref,
            (time.perf_counter() - start) * 1000,
            protocol.input_summary(batch),
            ranked[0]["label"],
            ranked[0]["probability"],
        )
        answer = {
            "request_id": request_id,
            "model_version": model.ref.version,
            "label": ranked[0]["label"],
            "probabilities": dict(zip(model.class_names, probabilities.tolist())),
            "top_k": ranked,
        }
        return prediction_response(orjson.dumps(answer), model)

    async def feedback(request: Request, request_id: str) -> Response:
        body = await read_body(request, 64 * 1024)
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as error:
            raise BadRequest(f'body is not JSON ({error}); send {{"request_id": "...", "label": "..."}}')
        if not isinstance(payload, dict) or not isinstance(payload.get("request_id"), str) or "label" not in payload:
            raise BadRequest('send {"request_id": "<X-Request-Id of the prediction>", "label": "<true class>"}')
        label = str(payload["label"])
        model = server.holder.current
        if model is not None and label not in model.class_names:
            raise BadRequest(f"label {label!r} is not a class of the model; classes: {', '.join(model.class_names)}")
        if not server.predlog.has_prediction(payload["request_id"]):
            raise NotFound(f"no prediction with request id {payload['request_id']!r} is logged")
        await server.predlog.log_feedback(payload["request_id"], label)
        return JSONResponse({"request_id": payload["request_id"], "label": label, "recorded": True})

    async def ping(request: Request, request_id: str) -> Response:
        return PlainTextResponse("alive\n")

    async def ready(request: Request, request_id: str) -> Response:
        model = server.model()
        return JSONResponse({"ready": True, "model_version": model.ref.version})

    async def version(request: Request, request_id: str) -> Response:
        model = server.model()
        ref = model.ref
        return JSONResponse(
            {
                "name": ref.name,
                "version": ref.version,
                "alias": ref.alias,
                "run_id": ref.run_id,
                "model_uri": server.settings.model_uri,
                "loaded_at": model.loaded_at,
                "last_error": server.holder.last_error,
            }
        )

    async def metrics(request: Request, request_id: str) -> Response:
        return Response(server.metrics.exposition(), media_type="text/plain; version=0.0.4")

    routes = [
        Route("/invocations", endpoint("invocations", invocations, admit=True), methods=["POST"]),
        Route("/predict", endpoint("predict", predict, admit=True), methods=["POST"]),
        Route("/feedback", endpoint("feedback", feedback), methods=["POST"]),
        Route("/ping", endpoint("ping", ping), methods=["GET"]),
        Route("/ready", endpoint("ready", ready), methods=["GET"]),
        Route("/version", endpoint("version", version), methods=["GET"]),
        Route("/metrics", endpoint("metrics", metrics), methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=server.lifespan)


def _int_query(request: Request, name: str, default: int) -> int:
    value = request.query_params.get(name)
    if value is None:
        return default
    if not value.isdigit() or int(value) < 1:
        raise BadRequest(f"query parameter {name}={value!r} must be a positive integer")
    return int(value)
