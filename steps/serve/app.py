"""HTTP only: routes, request ids, and errors turned into JSON in one handler.

MLflow's scoring protocol and the server's own endpoints are here; the Open
Inference Protocol's REST routes (/v2/...) come from `oip.rest`. Each handler
reads its request, calls the data plane and formats the answer; errors are
raised as `ServeError`s and answered by `error_response`. The request's id,
its X-Request-Id header and its metrics are the `RequestContext` layer's,
around every route.
"""

from __future__ import annotations

import logging
import time
from functools import partial

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from steps.serve import errors, protocol
from steps.serve.dataplane import DataPlane
from steps.serve.errors import BadRequest, ServeError
from steps.serve.metrics import ServerMetrics
from steps.serve.oip import rest as oip_rest
from steps.serve.reading import REQUEST_ID, header, plane_of, positive_int_query, read_body, read_image
from steps.serve.runtime import ServedModel
from steps.serve.server import Server

log = logging.getLogger("rtdeploy.serve")
ERROR_KIND = "rtdeploy.error_kind"  # scope key set by RequestContext and handle_error
DEFAULT_TOP_K = 3
FEEDBACK_BODY_LIMIT = 64 * 1024


async def invocations(request: Request) -> Response:
    plane = plane_of(request)
    start = time.perf_counter()
    with plane.admission:
        body = await read_body(request, plane.config.max_body_bytes)
        decode = partial(protocol.parse_invocation, body, header(request.scope, b"content-type"))
        inference = await plane.infer(decode, "invocations", request.scope[REQUEST_ID])
    encoding = time.perf_counter()
    response = prediction_response(protocol.format_predictions(inference.probabilities), inference.model)
    if plane.stages is not None:  # the request's other stages are the data plane's
        done = time.perf_counter()
        plane.stages.note("invocations", "encode", done - encoding)
        plane.stages.note("invocations", "handler", done - start)
    return response


async def predict(request: Request) -> Response:
    plane = plane_of(request)
    k = positive_int_query(request, "k", DEFAULT_TOP_K)
    with plane.admission:
        image = await read_image(request, plane.config.max_body_bytes)
        inference = await plane.infer(partial(protocol.image_input, image), "predict", request.scope[REQUEST_ID])
    model = inference.model
    answer = protocol.predict_answer(
        inference.probabilities[0], model.class_names, k, request.scope[REQUEST_ID], model.ref.version
    )
    return prediction_response(orjson.dumps(answer), model)


async def explain(request: Request) -> Response:
    """Which pixels the served model's answer rests on: the sample as /invocations (JSON, one sample) or /predict
    (an image) takes it, or {"request_id": ...} of a logged prediction whose input the log kept."""
    plane = plane_of(request)
    with plane.explain_admission:
        content_type = header(request.scope, b"content-type")
        if protocol.media_type(content_type) in protocol.JSON_TYPES:
            body = await read_body(request, plane.config.max_body_bytes)
            logged = protocol.logged_request(body)
            decode = None if logged else partial(protocol.parse_invocation, body, content_type)
        else:  # an image, raw or in a multipart form, as /predict takes it
            image = await read_image(request, plane.config.max_body_bytes)
            logged, decode = None, partial(protocol.image_input, image)
        model, explanation = await plane.explain(decode, logged)
    answer = protocol.explain_answer(
        explanation, model.class_names, request.scope[REQUEST_ID], model.ref.version, logged and logged[0]
    )
    return prediction_response(orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY), model)


async def feedback(request: Request) -> Response:
    request_id, label, index = protocol.parse_feedback(await read_body(request, FEEDBACK_BODY_LIMIT))
    await plane_of(request).feedback(request_id, label, index)
    return JSONResponse({"request_id": request_id, "label": label, "index": index, "recorded": True})


async def ping(request: Request) -> Response:
    return PlainTextResponse("alive\n")


async def ready(request: Request) -> Response:
    return JSONResponse({"ready": True, "model_version": plane_of(request).model().ref.version})


async def version(request: Request) -> Response:
    return JSONResponse(plane_of(request).version())


async def metrics(request: Request) -> Response:
    return Response(request.app.metrics.exposition(), media_type="text/plain; version=0.0.4")


ROUTES = [
    Route("/invocations", invocations, methods=["POST"]),
    Route("/predict", predict, methods=["POST"]),
    Route("/explain", explain, methods=["POST"]),
    Route("/feedback", feedback, methods=["POST"]),
    Route("/ping", ping, methods=["GET"]),
    Route("/ready", ready, methods=["GET"]),
    Route("/version", version, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
    *oip_rest.ROUTES,
]
# Metric and log labels: the name of the handler that took the request, or of the one its path names when it
# was refused before routing (a bad X-Request-Id); any other request is "other".
ENDPOINTS = {route.endpoint for route in ROUTES}
NAMES_BY_PATH = {route.path: route.name for route in ROUTES}  # the templated /v2/models/{name}/... match no path
PATHS = list(NAMES_BY_PATH)


def prediction_response(body: bytes, model: ServedModel) -> Response:
    """A prediction's JSON, headed with the version that made it."""
    response = Response(body, media_type="application/json")
    response.raw_headers.append((b"x-model-version", model.ref.version.encode()))
    return response


def error_response(error: ServeError, path: str) -> Response:
    """The one place an error becomes an answer: its status, JSON naming the problem (in the Open Inference
    Protocol's form under /v2, MLflow's elsewhere), and its headers."""
    body = {"error": error.message} if path.startswith(oip_rest.PREFIX) else error.as_json()
    return JSONResponse(body, status_code=error.status, headers=error.headers)


async def handle_error(request: Request, error: Exception) -> Response:
    """Registered for ServeError and for Starlette's own HTTPException (unknown path, wrong method, bad form)."""
    if isinstance(error, HTTPException):
        error = http_error(request, error)
    request.scope[ERROR_KIND] = error.kind
    return error_response(error, request.url.path)


def http_error(request: Request, error: HTTPException) -> ServeError:
    if error.status_code == 404:
        message = f"no endpoint at {request.url.path}; endpoints: {', '.join(PATHS)}"
    elif error.status_code == 405:
        allowed = (error.headers or {}).get("Allow", "")
        message = f"{request.method} is not allowed on {request.url.path}; use {allowed}"
    else:
        message = str(error.detail)
    return errors.for_status(error.status_code, message, error.headers)


class RequestContext:
    """Around every request: its id (the client's, checked, or a new one) echoed as X-Request-Id, its status
    and latency counted per endpoint, its answer told to the data plane (which logs refusals), and a bug of
    ours answered 500 with the traceback logged.

    A plain ASGI class: Starlette's BaseHTTPMiddleware would cost more than the prediction it wraps.
    """

    def __init__(self, app, plane: DataPlane, metrics: ServerMetrics):
        self.app, self.plane, self.metrics = app, plane, metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = None

        async def send_with_id(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                echo = (b"x-request-id", scope[REQUEST_ID].encode())  # a handler may have taken the body's id
                message["headers"] = [*message.get("headers", ()), echo]
            await send(message)

        try:
            scope[REQUEST_ID] = self.plane.request_id(header(scope, b"x-request-id"))
        except BadRequest as error:  # refused here: no route should see an id that cannot be logged or echoed
            scope[REQUEST_ID] = self.plane.request_id(None)
            scope[ERROR_KIND] = error.kind
            await error_response(error, scope["path"])(scope, receive, send_with_id)
        else:
            try:
                await self.app(scope, receive, send_with_id)
            except Exception:  # not a ServeError (handle_error answered those): a bug of ours, never the client's
                log.exception("internal error on %s %s", scope["method"], scope["path"])
                scope[ERROR_KIND] = ServeError.kind
                if status is None:
                    await error_response(ServeError("internal server error"), scope["path"])(
                        scope, receive, send_with_id
                    )
        handler = scope.get("endpoint")  # set by the route that took the request
        endpoint = handler.__name__ if handler in ENDPOINTS else NAMES_BY_PATH.get(scope["path"], "other")
        kind = scope.get(ERROR_KIND)
        self.metrics.observe_request(endpoint, status or 500, time.perf_counter() - start, kind)
        self.plane.answered(endpoint, status or 500, kind, scope[REQUEST_ID])


class ServingApp(Starlette):
    """The HTTP face of one Server: ROUTES, with RequestContext outermost and the one error handler.

    RequestContext takes the place of Starlette's ServerErrorMiddleware, whose
    job (a bug answered 500) it does too: one layer and one send wrapper less
    per request.
    """

    def __init__(self, server: Server):
        super().__init__(
            routes=ROUTES,
            exception_handlers={ServeError: handle_error, HTTPException: handle_error},
            lifespan=server.lifespan,
        )
        self.plane = server.plane
        self.metrics = server.metrics

    def build_middleware_stack(self):
        return RequestContext(
            ExceptionMiddleware(self.router, handlers=self.exception_handlers), self.plane, self.metrics
        )
