"""The Open Inference Protocol's REST face, on the server's HTTP port: health, metadata and infer under /v2.

Bodies are JSON, or JSON followed by raw tensors (the binary tensor data
extension: the request's `Inference-Header-Content-Length` says where the
JSON ends, and each binary input's `binary_data_size` how many bytes are
its own). Errors are answered `{"error": "..."}` by the app's one handler.
"""

from __future__ import annotations

from functools import partial

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from steps.serve.errors import BadRequest
from steps.serve.oip import tensors
from steps.serve.oip.tensors import InputTensor, OutputTensor
from steps.serve.reading import REQUEST_ID, header, plane_of, read_body
from steps.serve.runtime import ServedModel

PREFIX = "/v2"
HEADER_LENGTH = b"inference-header-content-length"
BINARY_DATA = "binary_data"  # an output's parameter: answer it raw
BINARY_DATA_OUTPUT = "binary_data_output"  # the request's parameter: answer every output raw
BINARY_DATA_SIZE = "binary_data_size"  # an input's or output's parameter: its raw bytes in the body


async def v2_live(request: Request) -> Response:
    return JSONResponse({"live": True})


async def v2_ready(request: Request) -> Response:
    plane_of(request).model()  # 503 with the reason until a model is loaded
    return JSONResponse({"ready": True})


async def v2_server_metadata(request: Request) -> Response:
    return JSONResponse(tensors.server_metadata())


async def v2_model_metadata(request: Request) -> Response:
    return JSONResponse(tensors.model_metadata(served(request)))


async def v2_model_ready(request: Request) -> Response:
    return JSONResponse({"name": served(request).ref.name, "ready": True})


async def v2_infer(request: Request) -> Response:
    plane = plane_of(request)
    with plane.admission:
        model = served(request)
        body = await read_body(request, plane.config.max_body_bytes)
        parsed = parse_infer_request(body, header(request.scope, HEADER_LENGTH))
        if parsed.get("id"):  # the protocol's own request id: logged, answered and echoed as X-Request-Id
            request.scope[REQUEST_ID] = plane.request_id(parsed["id"])
        request_id = request.scope[REQUEST_ID]
        names = tensors.requested_outputs([output["name"] for output in parsed["outputs"]])
        binary = binary_outputs(parsed, names)
        decode = partial(tensors.input_batch, parsed["inputs"])
        inference = await plane.infer(decode, "v2_infer", request_id, model)
    outputs = tensors.output_tensors(inference.probabilities, model.class_names, names)
    answer = {"model_name": model.ref.name, "model_version": model.ref.version, "id": request_id}
    response = infer_response(answer, outputs, binary)
    response.raw_headers.append((b"x-model-version", model.ref.version.encode()))
    return response


def served(request: Request) -> ServedModel:
    """The served model, if it is the one the path names (and its version, if the path has one)."""
    model = plane_of(request).model()
    tensors.check_model(model, request.path_params["name"], request.path_params.get("version"))
    return model


def parse_infer_request(body: bytes, header_length: str | None) -> dict:
    """The request's JSON with each input's data in place (raw bytes for binary inputs), checked for form."""
    usage = '{"inputs": [{"name": "input", "datatype": "FP32", "shape": [n, ...], "data": [...]}]}'
    binary = b""
    if header_length is not None:
        if not (header_length.isascii() and header_length.isdigit() and int(header_length) <= len(body)):
            raise BadRequest(
                f"Inference-Header-Content-Length {header_length[:20]!r} is not the length of the JSON at the "
                f"start of the {len(body)}-byte body"
            )
        body, binary = body[: int(header_length)], body[int(header_length) :]
    try:
        request = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise BadRequest(f"the inference request is not valid JSON ({error}); send {usage}")
    if not isinstance(request, dict) or not isinstance(request.get("inputs"), list):
        raise BadRequest(f"an inference request is a JSON object with a list of inputs: {usage}")
    if "id" in request and not isinstance(request["id"], str):
        raise BadRequest('"id" must be a string')
    outputs = request.setdefault("outputs", [])
    if not (isinstance(outputs, list) and all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs)):
        raise BadRequest('"outputs" must be a list of objects with a "name", e.g. [{"name": "probabilities"}]')
    request["inputs"], used = read_inputs(request["inputs"], binary, usage)
    if used != len(binary):
        raise BadRequest(
            f"the body has {len(binary)} bytes of binary data after the JSON, but the inputs' binary_data_size "
            f"add up to {used}; send each binary input whole, in the order of the inputs"
        )
    return request


def read_inputs(inputs: list, binary: bytes, usage: str) -> tuple[list[InputTensor], int]:
    """The inputs as tensors, binary ones cut from `binary` in order; and how many bytes they took."""
    found, offset = [], 0
    for item in inputs:
        if not isinstance(item, dict) or not all(key in item for key in ("name", "datatype", "shape")):
            raise BadRequest(f'each input is an object with "name", "datatype", "shape" and its data: {usage}')
        name, datatype, shape = item["name"], item["datatype"], item["shape"]
        if not isinstance(name, str) or not isinstance(datatype, str) or not isinstance(shape, list):
            raise BadRequest('an input\'s "name" and "datatype" are strings and its "shape" a list of integers')
        size = parameters_of(item, f"input {name[:40]!r}").get(BINARY_DATA_SIZE)
        if size is not None:
            if type(size) is not int or size < 0 or "data" in item:
                raise BadRequest(
                    f'input {name[:40]!r}: binary_data_size is a byte count, and a binary input has no "data"'
                )
            if offset + size > len(binary):
                raise BadRequest(
                    f"input {name[:40]!r} declares {size} bytes of binary data, but only {len(binary) - offset} "
                    "are left in the body: the binary payload is truncated"
                )
            data, offset = binary[offset : offset + size], offset + size
        elif isinstance(item.get("data"), list):
            data = item["data"]
        else:
            raise BadRequest(f'input {name[:40]!r} has neither "data" (a list) nor a binary_data_size parameter')
        found.append(InputTensor(name, datatype, tuple(shape), data))
    return found, offset


def binary_outputs(request: dict, names: tuple[str, ...]) -> set[str]:
    """The outputs to answer raw: those asked with binary_data, or all if the request asks binary_data_output."""
    if parameters_of(request, "the request").get(BINARY_DATA_OUTPUT) is True:
        return set(names)
    return {o["name"] for o in request["outputs"] if parameters_of(o, f"output {o['name'][:40]!r}").get(BINARY_DATA)}


def parameters_of(item: dict, what: str) -> dict:
    parameters = item.get("parameters")
    if parameters is None:
        return {}
    if not isinstance(parameters, dict):
        raise BadRequest(f'{what}\'s "parameters" must be an object, e.g. {{"binary_data": true}}')
    return parameters


def infer_response(answer: dict, outputs: list[OutputTensor], binary: set[str]) -> Response:
    """JSON, or JSON then the raw outputs with Inference-Header-Content-Length, when any output is binary."""
    blobs = []
    answer["outputs"] = []
    for output in outputs:
        described = {"name": output.name, "datatype": output.datatype, "shape": list(output.shape)}
        if output.name in binary:
            described["parameters"] = {BINARY_DATA_SIZE: len(output.raw)}
            blobs.append(output.raw)
        else:
            described["data"] = output.values
        answer["outputs"].append(described)
    head = orjson.dumps(answer)
    if not blobs:
        return Response(head, media_type="application/json")
    response = Response(b"".join((head, *blobs)), media_type="application/octet-stream")
    response.raw_headers.append((HEADER_LENGTH, str(len(head)).encode()))
    return response


MODEL = PREFIX + "/models/{name}"
VERSION = MODEL + "/versions/{version}"
ROUTES = [
    Route(PREFIX + "/health/live", v2_live, methods=["GET"]),
    Route(PREFIX + "/health/ready", v2_ready, methods=["GET"]),
    Route(PREFIX, v2_server_metadata, methods=["GET"]),
    Route(MODEL, v2_model_metadata, methods=["GET"]),
    Route(VERSION, v2_model_metadata, methods=["GET"]),
    Route(MODEL + "/ready", v2_model_ready, methods=["GET"]),
    Route(VERSION + "/ready", v2_model_ready, methods=["GET"]),
    Route(MODEL + "/infer", v2_infer, methods=["POST"]),
    Route(VERSION + "/infer", v2_infer, methods=["POST"]),
]
