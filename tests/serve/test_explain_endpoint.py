"""POST /explain on the real app: the sample as /invocations or /predict take it, or a logged prediction's
request id, answered with the served model's class, its probabilities and an occlusion map of the input's shape;
explain_concurrency at a time and explain_queue more waiting (503 beyond) while predictions go on; counted under
its own label."""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest

from tests.serve.test_app import IMAGE, INSTANCES, JSON, SAMPLE, error_of, wait_until
from tests.support.serving import GRAY_CLASSES, GRAY_SHAPE, InProcessServer, StandInRegistry, tiny_tflite


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    registry = StandInRegistry(tmp_path_factory.mktemp("registry"))
    registry.add("1", tiny_tflite(GRAY_SHAPE, len(GRAY_CLASSES)), GRAY_CLASSES)
    registry.aliases["champion"] = "1"
    server = InProcessServer(registry, tmp_path_factory.mktemp("serve") / "predictions.db")
    yield server
    server.stop()


def explained(server, body: bytes, headers: dict) -> dict:
    status, response_headers, answer = server.request("POST", "/explain", body, headers)
    assert status == 200, answer
    assert response_headers["x-model-version"] == "1"
    return json.loads(answer)


def test_a_sample_a_png_and_a_logged_request_are_explained_with_a_map_of_the_inputs_shape(server):
    status, headers, body = server.request("POST", "/invocations", INSTANCES, JSON)
    probabilities = np.array(json.loads(body)["predictions"][0])
    logged = {"request_id": headers["x-request-id"]}
    answers = [
        explained(server, INSTANCES, JSON),
        explained(server, IMAGE, {"Content-Type": "image/png"}),
        explained(server, json.dumps(logged).encode(), JSON),
    ]
    for answer in answers:
        assert np.array(answer["saliency"]).shape == GRAY_SHAPE and answer["method"] == "occlusion"
        assert answer["label"] == GRAY_CLASSES[int(probabilities.argmax())]
        assert list(answer["probabilities"].values()) == pytest.approx(probabilities, abs=0.01)  # PNG: 8-bit
    assert answers[2]["explained_request_id"] == logged["request_id"] and answers[0]["explained_request_id"] is None


@pytest.mark.parametrize(
    "body, status, words",
    [
        (json.dumps({"request_id": "never-sent"}).encode(), 404, "no input is logged for sample 0"),
        (json.dumps({"instances": np.repeat(SAMPLE, 2, axis=0).tolist()}).encode(), 400, "of one sample; got 2"),
        (json.dumps({"request_id": 7}).encode(), 400, 'send {"request_id"'),
        (b"{not json", 400, "not valid JSON"),
    ],
    ids=["unknown-request", "two-samples", "id-not-a-string", "broken-json"],
)
def test_what_cannot_be_explained_gets_a_client_error_naming_the_fix(server, body, status, words):
    answered, _, answer = server.request("POST", "/explain", body, JSON)
    assert answered == status and words in error_of(answered, answer)["message"]


def test_beyond_the_running_and_waiting_explanations_one_gets_503_while_predictions_go_on(tmp_path_factory):
    registry = StandInRegistry(tmp_path_factory.mktemp("registry"))
    registry.add("1", tiny_tflite(GRAY_SHAPE, len(GRAY_CLASSES)), GRAY_CLASSES)
    registry.aliases["champion"] = "1"
    tight = InProcessServer(registry, tmp_path_factory.mktemp("serve") / "p.db", explain_concurrency=1, explain_queue=1)
    head = b"POST /explain HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 999\r\n\r\n{"
    try:
        with (
            socket.create_connection(("127.0.0.1", tight.port)) as one,
            socket.create_connection(("127.0.0.1", tight.port)) as two,
        ):  # half a body each: one running slot and one waiting place held
            one.sendall(head)
            two.sendall(head)
            wait_until(lambda: tight.plane.explain_admission.in_flight == 2, "both slow explanations to be admitted")
            status, headers, body = tight.request("POST", "/explain", INSTANCES, JSON)
            assert status == 503 and headers["retry-after"] == "1"
            assert "explain_concurrency + explain_queue" in error_of(status, body)["message"]
            assert tight.request("POST", "/invocations", INSTANCES, JSON)[0] == 200
        wait_until(lambda: tight.plane.explain_admission.in_flight == 0, "the slow clients' places to be freed")
        assert tight.request("POST", "/explain", INSTANCES, JSON)[0] == 200
        _, _, exposition = tight.request("GET", "/metrics")
        assert 'endpoint="explain",status="200"' in exposition.decode()
    finally:
        tight.stop()
