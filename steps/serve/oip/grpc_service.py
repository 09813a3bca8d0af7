"""The Open Inference Protocol's gRPC face (inference.GRPCInferenceService), on `grpc_port`, in the server's loop.

The same data plane as the HTTP endpoints: one prediction log, one set of
metrics, request ids (the request's `id`, checked, or a new one, returned
either way), admission control and alias following. A client's mistake is
INVALID_ARGUMENT or NOT_FOUND, a server not ready or at capacity UNAVAILABLE;
only a bug of ours is INTERNAL.
"""

from __future__ import annotations

import functools
import logging
import time

import grpc

from steps.serve.dataplane import DataPlane
from steps.serve.errors import BadRequest, ServeError
from steps.serve.metrics import ServerMetrics, StageTimes
from steps.serve.oip import grpc_predict_v2_pb2 as pb
from steps.serve.oip import grpc_predict_v2_pb2_grpc as pb_grpc
from steps.serve.oip import tensors
from steps.serve.oip.tensors import InputTensor

log = logging.getLogger("rtdeploy.serve")
INFER_ENDPOINT = "v2_grpc_infer"  # ModelInfer's name in the prediction log and in stage timings
INFER_METHOD = "/inference.GRPCInferenceService/ModelInfer"
OutputTensor = pb.ModelInferResponse.InferOutputTensor
CODES = {  # a ServeError's HTTP status -> the gRPC status code a client of the protocol expects
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    503: grpc.StatusCode.UNAVAILABLE,
}


def answered(method):
    """Around every call: its status and latency counted (endpoint `grpc_<Method>`, the status as HTTP's), its
    answer told to the data plane (which logs refusals), errors turned into the protocol's status codes."""
    endpoint = f"grpc_{method.__name__}"

    @functools.wraps(method)
    async def call(self: InferenceService, request, context: grpc.aio.ServicerContext):
        start, status, kind = time.perf_counter(), 200, None
        try:
            return await method(self, request, context)
        except ServeError as error:
            status, kind = error.status, error.kind
            await context.abort(CODES.get(error.status, grpc.StatusCode.INTERNAL), error.message)
        except Exception:  # not a ServeError: a bug of ours, never the client's
            log.exception("internal error in %s", endpoint)
            status, kind = 500, ServeError.kind
            await context.abort(grpc.StatusCode.INTERNAL, "internal server error")
        finally:
            self.metrics.observe_request(endpoint, status, time.perf_counter() - start, kind)
            refused_id = logged_id(self.plane, request) if status >= 400 else None  # only refusals keep it here
            self.plane.answered(endpoint, status, kind, refused_id)

    return call


def logged_id(plane: DataPlane, request) -> str | None:
    """The request's own id as the log keeps it: none if it sent none, or one the log could not keep."""
    try:
        return plane.request_id(request.id) if getattr(request, "id", "") else None
    except BadRequest:
        return None


class InferenceService(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, plane: DataPlane, metrics: ServerMetrics):
        self.plane, self.metrics = plane, metrics

    @answered
    async def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=True)

    @answered
    async def ServerReady(self, request, context):
        return pb.ServerReadyResponse(ready=self.plane.models.current is not None)

    @answered
    async def ServerMetadata(self, request, context):
        return pb.ServerMetadataResponse(**tensors.server_metadata())

    @answered
    async def ModelReady(self, request, context):
        model = self.plane.models.current
        if model is None:
            return pb.ModelReadyResponse(ready=False)
        tensors.check_model(model, request.name, request.version)
        return pb.ModelReadyResponse(ready=True)

    @answered
    async def ModelMetadata(self, request, context):
        model = self.plane.model()
        tensors.check_model(model, request.name, request.version)
        metadata = tensors.model_metadata(model)
        for key in ("inputs", "outputs"):
            metadata[key] = [pb.ModelMetadataResponse.TensorMetadata(**tensor) for tensor in metadata[key]]
        return pb.ModelMetadataResponse(**metadata)

    @answered
    async def ModelInfer(self, request, context):
        plane = self.plane
        with plane.admission:
            model = plane.model()
            tensors.check_model(model, request.model_name, request.model_version)
            request_id = plane.request_id(request.id or None)
            names = tensors.requested_outputs([output.name for output in request.outputs])
            decode = functools.partial(tensors.input_batch, input_tensors(request))
            inference = await plane.infer(decode, INFER_ENDPOINT, request_id, model)
        encoding = time.perf_counter()
        outputs = tensors.output_tensors(inference.probabilities, model.class_names, names)
        described = [OutputTensor(name=o.name, datatype=o.datatype, shape=o.shape) for o in outputs]
        response = pb.ModelInferResponse(
            model_name=model.ref.name,
            model_version=model.ref.version,
            id=request_id,
            outputs=described,
            raw_output_contents=[output.raw for output in outputs],
        )
        if plane.stages is not None:
            plane.stages.note(INFER_ENDPOINT, "encode", time.perf_counter() - encoding)
        return response


def input_tensors(request: pb.ModelInferRequest) -> list[InputTensor]:
    """The request's inputs, each with its raw_input_contents entry, or its FP32 (or BYTES) contents."""
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise BadRequest(
            f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs; send one per input, in order"
        )
    inputs = []
    for index, tensor in enumerate(request.inputs):
        if raw:
            if tensor.HasField("contents"):
                raise BadRequest(f"input {tensor.name[:40]!r} has contents while the request has raw_input_contents")
            data = raw[index]
        elif tensor.datatype == tensors.BYTES:
            data = list(tensor.contents.bytes_contents)
        else:
            data = list(tensor.contents.fp32_contents)
            if not data and tensor.datatype == tensors.FP32 and tensor.contents.ListFields():
                raise BadRequest(f"input {tensor.name[:40]!r} is FP32: send its values in fp32_contents (or raw)")
        inputs.append(InputTensor(tensor.name, tensor.datatype, tuple(tensor.shape), data))
    return inputs


class StageTimer(grpc.aio.ServerInterceptor):
    """With stage timings on (metrics.StageTimes), what grpc.aio does around a ModelInfer handler: receive
    (the call accepted and its method found -> the handler starting: the request read and parsed), the
    handler itself, send (its return -> the response and status sent, when grpc.aio runs the call's done
    callbacks). Installed only then: an interceptor costs every call."""

    def __init__(self, stages: StageTimes):
        self.stages = stages

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        if details.method != INFER_METHOD or handler is None:
            return handler
        accepted, note = time.perf_counter(), self.stages.note

        async def timed(request, context):
            started = time.perf_counter()
            note(INFER_ENDPOINT, "receive", started - accepted)
            try:
                return await handler.unary_unary(request, context)
            finally:
                returned = time.perf_counter()
                note(INFER_ENDPOINT, "handler", returned - started)
                context.add_done_callback(lambda _: note(INFER_ENDPOINT, "send", time.perf_counter() - returned))

        return grpc.unary_unary_rpc_method_handler(
            timed, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
        )


async def start(plane: DataPlane, metrics: ServerMetrics, host: str, port: int, shared: bool) -> grpc.aio.Server:
    """Serve the protocol on host:port in the running loop; shared: other workers bind the same port too."""
    server = grpc.aio.server(
        interceptors=[StageTimer(metrics.stages)] if metrics.stages is not None else None,
        options=[
            ("grpc.so_reuseport", int(shared)),  # alone, a port already taken is an error, not a silent share
            ("grpc.max_receive_message_length", plane.config.max_body_bytes),
        ],
    )
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceService(plane, metrics), server)
    reason = "the address is in use or not this host's"
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError as error:  # grpcio says it either way, depending on its version: an error, or port 0
        bound, reason = 0, str(error)
    if not bound:
        raise OSError(f"gRPC cannot listen on {host}:{port} ({reason}); choose a free grpc_port")
    await server.start()
    return server
