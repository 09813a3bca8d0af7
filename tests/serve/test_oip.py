"""The Open Inference Protocol (KServe v2) in-process: REST under /v2 on the server's port, gRPC on grpc_port.

What a client of Triton, KServe or MLServer sees: health, server and model
metadata from the deployable, infer with JSON tensors, binary tensors (REST's
extension) and raw contents (gRPC), answers equal to /invocations' for the same
pixels, the request's `id` answered, logged and echoed; mistakes as the
protocol's own errors (REST `{"error": ...}` with a 4xx, gRPC
INVALID_ARGUMENT / NOT_FOUND / UNAVAILABLE), never a 5xx or INTERNAL, and the
server serving on. The same data plane as the other endpoints: the prediction
log, metrics and admission control. The official clients (tritonclient) are
tested against a server process in tests/test_serve.py.
"""

from __future__ import annotations

import base64
import io
import json
import sqlite3
import time

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from steps.serve import protocol
from steps.serve.oip import grpc_predict_v2_pb2 as pb
from steps.serve.oip import grpc_predict_v2_pb2_grpc as pb_grpc
from tests.support.server_process import free_port
from tests.support.serving import GRAY_CLASSES, GRAY_SHAPE, MODEL, InProcessServer, StandInRegistry, tiny_tflite

JSON = {"Content-Type": "application/json"}
BATCH = np.linspace(0, 1, 3 * 64, dtype=np.float32).reshape(3, *GRAY_SHAPE)
INFER = f"/v2/models/{MODEL}/infer"
Input = pb.ModelInferRequest.InferInputTensor
Output = pb.ModelInferRequest.InferRequestedOutputTensor


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    registry = StandInRegistry(tmp_path_factory.mktemp("registry"))
    registry.add("1", tiny_tflite(GRAY_SHAPE, len(GRAY_CLASSES)), GRAY_CLASSES)
    registry.add("2", b"not a flatbuffer" * 100, GRAY_CLASSES)
    registry.add("3", tiny_tflite(GRAY_SHAPE, len(GRAY_CLASSES)), GRAY_CLASSES)
    registry.aliases.update(champion="1", broken="2", moving="1")
    return registry


@pytest.fixture(scope="module")
def server(registry, tmp_path_factory):
    server = InProcessServer(registry, tmp_path_factory.mktemp("serve") / "predictions.db", grpc_port=free_port())
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stub(server):
    with grpc.insecure_channel(f"127.0.0.1:{server.server.config.grpc_port}") as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


def invocations(server, batch: np.ndarray) -> np.ndarray:
    status, _, body = server.request("POST", "/invocations", json.dumps({"instances": batch.tolist()}).encode(), JSON)
    assert status == 200
    return np.array(json.loads(body)["predictions"], np.float32)


def v2_json(batch: np.ndarray, **request) -> bytes:
    tensor = {"name": "input", "datatype": "FP32", "shape": list(batch.shape), "data": batch.ravel().tolist()}
    return json.dumps({"inputs": [tensor]} | request).encode()


def v2_binary(batch: np.ndarray, **request) -> tuple[bytes, dict]:
    """A request in the binary tensor data extension: JSON, then the raw input; headers to send with it."""
    tensor = {"name": "input", "datatype": "FP32", "shape": list(batch.shape)}
    tensor["parameters"] = {"binary_data_size": batch.nbytes}
    head = json.dumps({"inputs": [tensor]} | request).encode()
    return head + batch.astype("<f4").tobytes(), {"Inference-Header-Content-Length": str(len(head))}


def binary_answer(headers: dict, body: bytes) -> tuple[dict, dict[str, bytes]]:
    """An answer in the binary extension: its JSON, and each binary output's raw bytes by name."""
    length = int(headers["inference-header-content-length"])
    answer, offset, raw = json.loads(body[:length]), length, {}
    for output in answer["outputs"]:
        size = output["parameters"]["binary_data_size"]
        raw[output["name"]], offset = body[offset : offset + size], offset + size
    assert offset == len(body)
    return answer, raw


def labels_of(raw: bytes) -> list[str]:
    """A BYTES tensor's raw form: each element a 4-byte little-endian length and its bytes."""
    labels, offset = [], 0
    while offset < len(raw):
        size = int.from_bytes(raw[offset : offset + 4], "little")
        labels.append(raw[offset + 4 : offset + 4 + size].decode())
        offset += 4 + size
    return labels


def grpc_infer(stub, batch: np.ndarray, model: str = MODEL, **request) -> pb.ModelInferResponse:
    tensor = Input(name="input", datatype="FP32", shape=list(batch.shape))
    raw = [batch.astype("<f4").tobytes()]
    return stub.ModelInfer(pb.ModelInferRequest(model_name=model, inputs=[tensor], raw_input_contents=raw, **request))


def logged(server, request_id: str) -> list[tuple]:
    with sqlite3.connect(server.server.config.prediction_log) as connection:
        sql = "SELECT endpoint, model_version, n_samples FROM predictions WHERE request_id = ?"
        return connection.execute(sql, (request_id,)).fetchall()


def test_health_and_server_metadata(server, stub):
    assert server.request("GET", "/v2/health/live")[::2] == (200, b'{"live":true}')
    assert server.request("GET", "/v2/health/ready")[::2] == (200, b'{"ready":true}')
    status, _, body = server.request("GET", "/v2")
    assert status == 200
    assert json.loads(body)["name"] == "rtdeploy" and json.loads(body)["extensions"] == ["binary_tensor_data"]
    assert stub.ServerLive(pb.ServerLiveRequest()).live and stub.ServerReady(pb.ServerReadyRequest()).ready
    assert stub.ServerMetadata(pb.ServerMetadataRequest()).name == "rtdeploy"


def test_model_metadata_describes_the_served_deployable_under_its_registered_name(server, stub):
    expected = {
        "name": MODEL,
        "versions": ["1"],
        "platform": "tflite",
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 8, 8, 1]}],
        "outputs": [
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]},
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
        ],
    }
    for path in (f"/v2/models/{MODEL}", f"/v2/models/{MODEL}/versions/1"):
        status, _, body = server.request("GET", path)
        assert status == 200 and json.loads(body) == expected
    metadata = stub.ModelMetadata(pb.ModelMetadataRequest(name=MODEL))
    assert (metadata.name, list(metadata.versions), metadata.platform) == (MODEL, ["1"], "tflite")
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.inputs] == [("input", "FP32", [-1, 8, 8, 1])]
    assert [t.name for t in metadata.outputs] == ["probabilities", "label"]
    assert server.request("GET", f"/v2/models/{MODEL}/ready")[::2] == (200, b'{"name":"tiny","ready":true}')
    assert stub.ModelReady(pb.ModelReadyRequest(name=MODEL, version="1")).ready


def test_json_binary_and_grpc_answers_equal_invocations_for_the_same_pixels(server, stub):
    expected = invocations(server, BATCH)
    classes = [GRAY_CLASSES[i] for i in expected.argmax(axis=1)]

    both = [{"name": "probabilities"}, {"name": "label"}]
    status, headers, body = server.request("POST", INFER, v2_json(BATCH, outputs=both), JSON)
    assert status == 200 and headers["x-model-version"] == "1"
    answer = json.loads(body)
    assert (answer["model_name"], answer["model_version"]) == (MODEL, "1")
    probabilities, labels = answer["outputs"]
    assert (probabilities["datatype"], probabilities["shape"]) == ("FP32", [3, 10])
    assert np.array_equal(np.array(probabilities["data"], np.float32).reshape(3, 10), expected)
    assert labels == {"name": "label", "datatype": "BYTES", "shape": [3], "data": classes}

    body, headers = v2_binary(BATCH.reshape(3, 64), parameters={"binary_data_output": True})  # flattened rows too
    status, answer_headers, answer_body = server.request("POST", INFER, body, headers)
    assert status == 200 and answer_headers["content-type"] == "application/octet-stream"
    answer, raw = binary_answer(answer_headers, answer_body)
    assert [o["name"] for o in answer["outputs"]] == ["probabilities"]  # none asked for: the probabilities
    assert np.array_equal(np.frombuffer(raw["probabilities"], "<f4").reshape(3, 10), expected)

    body, headers = v2_binary(BATCH, outputs=[{"name": "label", "parameters": {"binary_data": True}}])
    answer, raw = binary_answer(*server.request("POST", INFER, body, headers)[1:])
    assert labels_of(raw["label"]) == classes

    response = grpc_infer(stub, BATCH, outputs=[Output(name="probabilities"), Output(name="label")])
    assert (response.model_name, response.model_version) == (MODEL, "1")
    assert [(o.name, o.datatype, list(o.shape)) for o in response.outputs] == [
        ("probabilities", "FP32", [3, 10]),
        ("label", "BYTES", [3]),
    ]
    assert np.array_equal(np.frombuffer(response.raw_output_contents[0], "<f4").reshape(3, 10), expected)
    assert labels_of(response.raw_output_contents[1]) == classes

    contents = pb.InferTensorContents(fp32_contents=BATCH.ravel().tolist())  # typed contents instead of raw
    tensor = Input(name="input", datatype="FP32", shape=[3, 8, 8, 1], contents=contents)
    response = stub.ModelInfer(pb.ModelInferRequest(model_name=MODEL, model_version="1", inputs=[tensor]))
    assert np.array_equal(np.frombuffer(response.raw_output_contents[0], "<f4").reshape(3, 10), expected)


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_bytes_input_of_encoded_images_is_decoded_as_predict_decodes_them_on_every_transport(server, stub):
    """Photos of any size go to v2 as encoded files (a few kB, not 4 bytes per pixel), decoded by the one
    function training and /predict use."""
    rng = np.random.default_rng(5)
    images = [_png(rng.integers(0, 256, (side, side), dtype=np.uint8)) for side in (8, 20, 33)]
    expected = invocations(server, np.concatenate([protocol.image_input(image, GRAY_SHAPE) for image in images]))
    length_prefixed = b"".join(len(image).to_bytes(4, "little") + image for image in images)

    as_json = {
        "name": "input",
        "datatype": "BYTES",
        "shape": [3],
        "data": [base64.b64encode(i).decode() for i in images],
    }
    status, _, body = server.request("POST", INFER, json.dumps({"inputs": [as_json]}).encode(), JSON)
    assert status == 200, body
    assert np.array_equal(np.array(json.loads(body)["outputs"][0]["data"], np.float32).reshape(3, 10), expected)

    tensor = {
        "name": "input",
        "datatype": "BYTES",
        "shape": [3],
        "parameters": {"binary_data_size": len(length_prefixed)},
    }
    head = json.dumps({"inputs": [tensor]}).encode()
    status, _, body = server.request(
        "POST", INFER, head + length_prefixed, {"Inference-Header-Content-Length": str(len(head))}
    )
    assert status == 200 and np.array_equal(np.array(json.loads(body)["outputs"][0]["data"]).reshape(3, 10), expected)

    grpc_tensor = Input(name="input", datatype="BYTES", shape=[3])
    for request in (
        pb.ModelInferRequest(model_name=MODEL, inputs=[grpc_tensor], raw_input_contents=[length_prefixed]),
        pb.ModelInferRequest(
            model_name=MODEL,
            inputs=[
                Input(name="input", datatype="BYTES", shape=[3], contents=pb.InferTensorContents(bytes_contents=images))
            ],
        ),
    ):
        response = stub.ModelInfer(request)
        assert np.array_equal(np.frombuffer(response.raw_output_contents[0], "<f4").reshape(3, 10), expected)


@pytest.mark.parametrize(
    "tensor, words",
    [
        ({"shape": [2], "data": [base64.b64encode(b"x").decode()]}, "has shape [2] and 1 elements"),
        ({"shape": [1], "data": ["not base64!"]}, "base64"),
        ({"shape": [1], "data": [base64.b64encode(b"GIF89a not really").decode()]}, "not a readable PNG or JPEG"),
        ({"shape": [0], "data": []}, "n >= 1"),
        ({"shape": [1], "data": [1.5]}, "base64 strings"),
    ],
    ids=["shape-vs-elements", "not-base64", "not-an-image", "none", "numbers"],
)
def test_a_bad_bytes_input_is_a_400_naming_the_problem(server, tensor, words):
    body = json.dumps({"inputs": [{"name": "input", "datatype": "BYTES"} | tensor]}).encode()
    status, _, answer = server.request("POST", INFER, body, JSON)
    assert status == 400 and words in json.loads(answer)["error"], answer


def test_the_request_id_is_answered_logged_and_echoed_on_both_transports(server, stub):
    status, headers, body = server.request("POST", INFER, v2_json(BATCH[:1], id="rest-7"), JSON)
    assert status == 200 and json.loads(body)["id"] == "rest-7" and headers["x-request-id"] == "rest-7"
    assert grpc_infer(stub, BATCH[:2], id="grpc-7").id == "grpc-7"
    assert grpc_infer(stub, BATCH[:1]).id  # none given: the server's, to send feedback with
    assert logged(server, "rest-7") == [("v2_infer", "1", 1)]
    assert logged(server, "grpc-7") == [("v2_grpc_infer", "1", 2)]
    feedback = json.dumps({"request_id": "grpc-7", "label": "3", "index": 1}).encode()
    assert server.request("POST", "/feedback", feedback, JSON)[0] == 200


def test_requests_are_counted_per_endpoint_in_the_servers_metrics(server, stub):
    before = server.metric('rtdeploy_requests_total{endpoint="grpc_ModelInfer",status="200"}')
    grpc_infer(stub, BATCH[:1])
    after = server.metric('rtdeploy_requests_total{endpoint="grpc_ModelInfer",status="200"}')
    assert after == before + 1
    server.request("POST", INFER, v2_json(BATCH[:1]), JSON)
    assert server.metric('rtdeploy_requests_total{endpoint="v2_infer",status="200"}') >= 1


TRUNCATED = v2_binary(BATCH)[0][:-5]


@pytest.mark.parametrize(
    "path, body, headers, status, words",
    [
        (INFER, v2_json(BATCH.astype(np.float64)).replace(b'"FP32"', b'"INT8"'), JSON, 400, "datatype 'INT8'"),
        (INFER, v2_json(BATCH.reshape(3, 8, 4, 2)), JSON, 400, "the model takes [n, 8, 8, 1] or [n, 64]"),
        (INFER, v2_json(BATCH[:0]).replace(b"[0, 8, 8, 1]", b"[0, 298, 197397, 197791]"), JSON, 400, "shape"),
        (INFER, v2_json(BATCH).replace(b"[3, 8, 8, 1]", b"[4, 8, 8, 1]"), JSON, 400, "holds 256"),
        ("/v2/models/nope/infer", v2_json(BATCH), JSON, 404, "model 'nope' is not served here"),
        (f"/v2/models/{MODEL}/versions/2/infer", v2_json(BATCH), JSON, 404, "serves version 1"),
        (INFER, TRUNCATED, v2_binary(BATCH)[1], 400, "truncated"),
        (INFER, v2_binary(BATCH)[0], {"Inference-Header-Content-Length": "999999"}, 400, "not the length"),
        (INFER, v2_binary(BATCH)[0] + b"\0\0\0\0", v2_binary(BATCH)[1], 400, "add up to"),
        (INFER, b"{not json", JSON, 400, "not valid JSON"),
        (INFER, b'{"inputs": 5}', JSON, 400, "list of inputs"),
        (INFER, v2_json(BATCH).replace(b'"input"', b'"pixels"'), JSON, 400, "no input 'pixels'"),
        (INFER, v2_json(BATCH, outputs=[{"name": "logits"}]), JSON, 400, "no output 'logits'"),
        (INFER, v2_json(BATCH, parameters=[1]), JSON, 400, '"parameters" must be an object'),
        (INFER, v2_json(BATCH, id="two words"), JSON, 400, "request id"),
        (INFER, b'{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1]}]}', JSON, 400, "neither"),
        (INFER, v2_json(BATCH).replace(b"[3, 8, 8, 1]", b"[3, 8, -8, 1]"), JSON, 400, "shape"),
        ("/v2/models/nope", None, {}, 404, "not served here"),
        ("/v2/models/nope/ready", None, {}, 404, "not served here"),
        ("/v2/nothing-here", None, {}, 404, "no endpoint"),
    ],
    ids=[
        "datatype",
        "shape",
        "huge-empty-shape",
        "shape-vs-data",
        "unknown-model",
        "unknown-version",
        "truncated-binary",
        "header-beyond-body",
        "binary-left-over",
        "not-json",
        "inputs-not-a-list",
        "unknown-input",
        "unknown-output",
        "parameters-not-object",
        "bad-id",
        "no-data",
        "negative-dimension",
        "metadata-unknown",
        "ready-unknown",
        "unknown-path",
    ],
)
def test_a_rest_mistake_is_a_4xx_in_the_protocols_error_form(server, path, body, headers, status, words):
    got, answer_headers, answer = server.request("POST" if body is not None else "GET", path, body, headers)
    assert got == status, answer
    error = json.loads(answer)
    assert set(error) == {"error"} and words in error["error"], error
    assert answer_headers["content-type"] == "application/json"
    assert server.request("POST", INFER, v2_json(BATCH), JSON)[0] == 200  # and the server serves on


@pytest.mark.parametrize(
    "request_fields, code, words",
    [
        ({"datatype": "INT32"}, grpc.StatusCode.INVALID_ARGUMENT, "datatype 'INT32'"),
        ({"shape": [3, 8, 4, 2]}, grpc.StatusCode.INVALID_ARGUMENT, "the model takes [n, 8, 8, 1]"),
        ({"shape": [0, 298, 197397, 197791, 198183], "raw": b""}, grpc.StatusCode.INVALID_ARGUMENT, "shape"),
        ({"shape": [4, 8, 8, 1]}, grpc.StatusCode.INVALID_ARGUMENT, "takes 1024"),
        ({"raw": b"\0" * 10}, grpc.StatusCode.INVALID_ARGUMENT, "holds 10 bytes"),
        ({"model": "nope"}, grpc.StatusCode.NOT_FOUND, "model 'nope' is not served here"),
        ({"version": "2"}, grpc.StatusCode.NOT_FOUND, "serves version 1"),
        ({"output": "logits"}, grpc.StatusCode.INVALID_ARGUMENT, "no output 'logits'"),
        ({"id": "é"}, grpc.StatusCode.INVALID_ARGUMENT, "request id"),
        ({"two_raw": True}, grpc.StatusCode.INVALID_ARGUMENT, "2 entries for 1 inputs"),
    ],
    ids=[
        "datatype",
        "shape",
        "huge-empty-shape",
        "shape-vs-raw",
        "raw-too-short",
        "unknown-model",
        "unknown-version",
        "output",
        "id",
        "raw-count",
    ],
)
def test_a_grpc_mistake_is_the_protocols_status_code(server, stub, request_fields, code, words):
    fields = {"datatype": "FP32", "shape": [3, 8, 8, 1], "raw": BATCH.tobytes()} | request_fields
    tensor = Input(name="input", datatype=fields["datatype"], shape=fields["shape"])
    raw = [fields["raw"]] * (2 if fields.get("two_raw") else 1)
    request = pb.ModelInferRequest(
        model_name=fields.get("model", MODEL),
        model_version=fields.get("version", ""),
        id=fields.get("id", ""),
        inputs=[tensor],
        raw_input_contents=raw,
        outputs=[Output(name=fields["output"])] if "output" in fields else [],
    )
    with pytest.raises(grpc.RpcError) as raised:
        stub.ModelInfer(request)
    assert raised.value.code() == code and words in raised.value.details(), raised.value.details()
    with pytest.raises(grpc.RpcError) as raised:
        stub.ModelMetadata(pb.ModelMetadataRequest(name="nope"))
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert grpc_infer(stub, BATCH[:1]).model_version == "1"  # and the server serves on


def test_a_grpc_refusal_is_logged_by_kind_under_its_id_unless_the_id_is_the_mistake(server, stub):
    for request in ({"model": "nope", "id": "grpc-refused"}, {"id": "x" * 300}):
        with pytest.raises(grpc.RpcError):
            grpc_infer(stub, BATCH, **request)
    grpc_infer(stub, BATCH[:1])  # its commit carries the refusals before it (nobody waits for a refusal's)
    sql = "SELECT status, kind, request_id FROM refusals WHERE endpoint = 'grpc_ModelInfer' ORDER BY rowid"
    with sqlite3.connect(server.server.config.prediction_log) as connection:
        rows = connection.execute(sql).fetchall()
    assert (404, "NOT_FOUND", "grpc-refused") in rows
    assert (400, "BAD_REQUEST", None) in rows  # an id of 300 characters is refused, not kept


def test_at_capacity_both_transports_answer_unavailable(server, stub):
    admission = server.plane.admission
    admission.in_flight = admission.limit  # as if max_queue requests were in progress
    try:
        assert server.request("POST", INFER, v2_json(BATCH), JSON)[0] == 503
        with pytest.raises(grpc.RpcError) as raised:
            grpc_infer(stub, BATCH)
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE and "capacity" in raised.value.details()
    finally:
        admission.in_flight = 0
    assert grpc_infer(stub, BATCH[:1]).model_version == "1"


def test_while_no_model_is_loaded_ready_is_false_and_infer_is_unavailable(registry, tmp_path):
    server = InProcessServer(registry, tmp_path / "p.db", model_uri=f"models:/{MODEL}@broken", grpc_port=free_port())
    try:
        status, headers, body = server.request("GET", "/v2/health/ready")
        assert status == 503 and headers["retry-after"] and "cannot be loaded" in json.loads(body)["error"]
        assert server.request("GET", "/v2/health/live")[0] == 200
        with grpc.insecure_channel(f"127.0.0.1:{server.server.config.grpc_port}") as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            assert stub.ServerLive(pb.ServerLiveRequest()).live
            assert not stub.ServerReady(pb.ServerReadyRequest()).ready
            assert not stub.ModelReady(pb.ModelReadyRequest(name=MODEL)).ready
            with pytest.raises(grpc.RpcError) as raised:
                grpc_infer(stub, BATCH)
            assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop()


def test_both_transports_follow_the_alias_as_every_endpoint_does(registry, tmp_path):
    server = InProcessServer(registry, tmp_path / "p.db", model_uri=f"models:/{MODEL}@moving", grpc_port=free_port())
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.server.config.grpc_port}") as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            assert grpc_infer(stub, BATCH[:1]).model_version == "1"
            registry.aliases["moving"] = "3"
            server.server.follower.check_once()  # what the poll would do
            assert grpc_infer(stub, BATCH[:1]).model_version == "3"
            assert stub.ModelMetadata(pb.ModelMetadataRequest(name=MODEL)).versions == ["3"]
        assert json.loads(server.request("GET", f"/v2/models/{MODEL}")[2])["versions"] == ["3"]
        status, _, body = server.request("POST", f"/v2/models/{MODEL}/versions/1/infer", v2_json(BATCH), JSON)
        assert status == 404 and "serves version 3" in json.loads(body)["error"]
    finally:
        registry.aliases["moving"] = "1"
        server.stop()


def test_grpc_is_off_unless_a_port_is_given(registry, tmp_path):
    server = InProcessServer(registry, tmp_path / "p.db")
    try:
        assert server.server.config.grpc_port == 0
        assert server.request("GET", "/v2/health/live")[0] == 200  # REST v2 is always on
    finally:
        server.stop()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
tensor_fields = st.fixed_dictionaries(
    {},
    optional={
        "name": st.sampled_from(["input", "x", 3]),
        "datatype": st.sampled_from(["FP32", "FP64", "BYTES", None]),
        "shape": st.one_of(st.lists(st.integers(-2, 70), max_size=5), json_values),
        "data": json_values,
        "parameters": st.one_of(st.fixed_dictionaries({"binary_data_size": st.integers(-1, 600)}), json_values),
    },
)
v2_requests = st.fixed_dictionaries(
    {},
    optional={
        "inputs": st.one_of(st.lists(tensor_fields, max_size=2), json_values),
        "outputs": st.one_of(st.lists(st.fixed_dictionaries({"name": json_values}), max_size=2), json_values),
        "parameters": json_values,
        "id": json_values,
    },
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=v2_requests, tail=st.binary(max_size=600), declared=st.one_of(st.none(), st.integers(-5, 2000)))
def test_fuzzed_v2_requests_never_get_a_5xx(server, request, tail, declared):
    head = json.dumps(request).encode()
    headers = JSON if declared is None else {"Inference-Header-Content-Length": str(declared)}
    status, _, answer = server.request("POST", INFER, head + (tail if declared is not None else b""), headers)
    assert status < 500, answer[:300]
    if status >= 400:
        assert set(json.loads(answer)) == {"error"}


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    datatype=st.sampled_from(["FP32", "FP16", "BYTES", ""]),
    shape=st.lists(st.integers(-(2**40), 2**40), max_size=6),
    raw=st.lists(st.binary(max_size=300), max_size=2),
    contents=st.lists(st.floats(width=32), max_size=70),
    outputs=st.lists(st.sampled_from(["probabilities", "label", "", "x"]), max_size=3),
)
def test_fuzzed_grpc_requests_never_get_internal(stub, datatype, shape, raw, contents, outputs):
    tensor = Input(name="input", datatype=datatype, shape=shape)
    if contents and not raw:
        tensor.contents.fp32_contents.extend(contents)
    request = pb.ModelInferRequest(
        model_name=MODEL, inputs=[tensor], raw_input_contents=raw, outputs=[Output(name=o) for o in outputs]
    )
    try:
        stub.ModelInfer(request)
    except grpc.RpcError as error:
        assert error.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND), error.details()


def stage_counts(server) -> dict[tuple[str, str], tuple[float, float]]:
    """(endpoint, stage) -> (seconds in all, calls), from /metrics."""
    found: dict[tuple[str, str], list[float]] = {}
    for line in server.request("GET", "/metrics")[2].decode().splitlines():
        for part, index in (("_sum{", 0), ("_count{", 1)):
            if line.startswith(f"rtdeploy_stage_seconds{part}"):
                labels = dict(item.split("=") for item in line[line.index("{") + 1 : line.index("}")].split(","))
                key = (labels["endpoint"].strip('"'), labels["stage"].strip('"'))
                found.setdefault(key, [0.0, 0.0])[index] = float(line.split()[-1])
    return {key: tuple(value) for key, value in found.items()}


def test_stage_timings_are_off_by_default_and_on_time_each_stage_of_a_call_once(
    server, registry, tmp_path, monkeypatch
):
    """RTDEPLOY_STAGE_TIMINGS=1 (what bench/protocols.py's stage table uses): every stage of one /invocations and one
    gRPC call counted once; the data plane's stages and the answer's encoding lie within the handler's time."""
    assert stage_counts(server) == {}
    monkeypatch.setenv("RTDEPLOY_STAGE_TIMINGS", "1")
    timed = InProcessServer(registry, tmp_path / "p.db", grpc_port=free_port())
    try:
        invocations(timed, BATCH[:1])
        with grpc.insecure_channel(f"127.0.0.1:{timed.server.config.grpc_port}") as channel:
            grpc_infer(pb_grpc.GRPCInferenceServiceStub(channel), BATCH[:1])
        deadline = time.monotonic() + 10  # send is noted once grpc.aio has sent the answer, maybe after it arrived
        while ("v2_grpc_infer", "send") not in stage_counts(timed) and time.monotonic() < deadline:
            time.sleep(0.01)
        stages = stage_counts(timed)
    finally:
        timed.stop()
    inside = ("decode", "queue", "invoke", "log", "encode")
    expected = {("invocations", stage) for stage in (*inside, "handler")}
    expected |= {("v2_grpc_infer", stage) for stage in ("receive", *inside, "handler", "send")}
    assert set(stages) == expected
    assert all(calls == 1 and seconds >= 0 for seconds, calls in stages.values())
    for endpoint in ("invocations", "v2_grpc_infer"):
        assert sum(stages[endpoint, stage][0] for stage in inside) <= stages[endpoint, "handler"][0] + 1e-9
