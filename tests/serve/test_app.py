"""The HTTP server in-process: the real app under uvicorn on 127.0.0.1, a stand-in registry behind it.

What a client sees: the endpoints and their answers, X-Request-Id and
X-Model-Version on every prediction, errors as JSON naming the problem (also
for Starlette's own 404/405 and a bug of ours, 500), 503 with Retry-After when
at capacity or not ready, 413 over the body limit, and fuzzed requests (paths,
methods, query strings, headers, bodies) that never get a 5xx. Each 5xx found
from outside has its regression test here. And what the prediction log gets
from the server: a prediction's rows with the input the model saw, a retried
request id logged every time, feedback for one sample of a batch, every
refused request by kind, heartbeats, and `log_inputs` as configured.
"""

from __future__ import annotations

import io
import json
import os
import socket
import sqlite3
import threading
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from steps.core.log_format import decode_input
from steps.serve import protocol
from tests.support.serving import GRAY_CLASSES, GRAY_SHAPE, InProcessServer, StandInRegistry, tiny_tflite

JSON = {"Content-Type": "application/json"}
SAMPLE = np.linspace(0, 1, 64, dtype=np.float32).reshape(1, *GRAY_SHAPE)
INSTANCES = json.dumps({"instances": SAMPLE.tolist()}).encode()


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """v1 and v2 good (the same model), v3 a corrupt file; champion -> v1."""
    registry = StandInRegistry(tmp_path_factory.mktemp("registry"))
    for version in ("1", "2"):
        registry.add(version, tiny_tflite(GRAY_SHAPE, len(GRAY_CLASSES)), GRAY_CLASSES)
    registry.add("3", b"not a flatbuffer" * 100, GRAY_CLASSES)
    registry.aliases["champion"] = "1"
    return registry


@pytest.fixture(scope="module")
def server(registry, tmp_path_factory):
    server = InProcessServer(registry, tmp_path_factory.mktemp("serve") / "predictions.db")
    yield server
    server.stop()


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


IMAGE = png((SAMPLE[0, ..., 0] * 255).astype(np.uint8))


def multipart(fields: dict[str, tuple[str | None, bytes]], boundary: str = "BOUNDARY") -> tuple[bytes, dict]:
    """A multipart/form-data body: field name -> (file name or None, content)."""
    parts = []
    for name, (filename, content) in fields.items():
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        parts.append(f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + content + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def error_of(status: int, body: bytes) -> dict:
    """A 4xx/5xx answer's JSON, checked to have the error shape."""
    answer = json.loads(body)
    assert set(answer) == {"error_code", "message"} and answer["message"], answer
    return answer


def logged_rows(server: InProcessServer, request_id: str) -> list[tuple]:
    return query(server, "SELECT endpoint, model_version, n_samples FROM predictions WHERE request_id = ?", request_id)


def query(server: InProcessServer, sql: str, *parameters) -> list:
    """Rows of the server's prediction log, as sqlite3 gives them (dicts if the query selects *)."""
    with sqlite3.connect(server.server.config.prediction_log) as connection:
        if sql.startswith("SELECT *"):
            connection.row_factory = sqlite3.Row
            return [dict(row) for row in connection.execute(sql, parameters)]
        return connection.execute(sql, parameters).fetchall()


def test_invocations_answers_probabilities_headed_with_request_id_and_model_version(server):
    status, headers, body = server.request("POST", "/invocations", INSTANCES, JSON)
    assert status == 200 and headers["x-model-version"] == "1"
    probabilities = np.array(json.loads(body)["predictions"])
    assert probabilities.shape == (1, 10) and probabilities.sum() == pytest.approx(1, abs=1e-5)
    assert logged_rows(server, headers["x-request-id"]) == [("invocations", "1", 1)]


def test_a_client_request_id_is_echoed_and_logged(server):
    status, headers, _ = server.request("POST", "/invocations", INSTANCES, JSON | {"X-Request-Id": "client-42"})
    assert status == 200 and headers["x-request-id"] == "client-42"
    assert logged_rows(server, "client-42") == [("invocations", "1", 1)]


def test_the_same_request_id_sent_20_times_is_answered_and_logged_every_time(server):
    """Was a 500 (and so was every request in the same group commit): request_id was the log's primary key."""
    retry = JSON | {"X-Request-Id": "retry"}
    assert [server.request("POST", "/invocations", INSTANCES, retry)[0] for _ in range(10)] == [200] * 10
    statuses = []

    def send():
        statuses.append(server.request("POST", "/invocations", INSTANCES, retry)[0])

    threads = [threading.Thread(target=send) for _ in range(10)]  # some land in one group commit
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 10
    ids = [id for (id,) in query(server, "SELECT id FROM predictions WHERE request_id = 'retry'")]
    assert len(ids) == len(set(ids)) == 20
    samples = "SELECT count(*) FROM samples JOIN predictions ON id = prediction_id WHERE request_id = 'retry'"
    assert query(server, samples) == [(20,)]
    feedback = json.dumps({"request_id": "retry", "label": "4"}).encode()
    assert server.request("POST", "/feedback", feedback, JSON)[0] == 200
    labelled = (
        "SELECT count(*), min(true_label), max(true_label) FROM predictions JOIN feedback USING (request_id) "
        "WHERE request_id = 'retry'"
    )
    assert query(server, labelled) == [(20, "4", "4")]  # one feedback labels every retry


def test_a_prediction_is_logged_with_its_probabilities_and_the_image_the_model_saw(server):
    status, headers, body = server.request("POST", "/predict", IMAGE, {"Content-Type": "image/png"})
    answer = json.loads(body)
    assert status == 200
    (row,) = query(server, "SELECT * FROM predictions WHERE request_id = ?", headers["x-request-id"])
    assert row["replica"] == f"127.0.0.1:{server.port}:{os.getpid()}"
    assert (row["endpoint"], row["model_name"], row["model_version"], row["n_samples"], row["input_shape"]) == (
        "predict",
        "tiny",
        "1",
        1,
        "8,8,1",
    )
    assert 0 < row["inference_ms"] <= row["latency_ms"] and row["time"] <= time.time()
    assert row["predicted_label"] == answer["label"]
    assert row["probability"] == pytest.approx(answer["probabilities"][answer["label"]], rel=1e-6)
    (sample,) = query(server, "SELECT * FROM samples WHERE prediction_id = ?", row["id"])
    assert sample["sample_index"] == 0 and GRAY_CLASSES[sample["predicted_class"]] == answer["label"]
    answered = np.array([answer["probabilities"][name] for name in GRAY_CLASSES], np.float32)
    assert np.array_equal(np.frombuffer(sample["probabilities"], "<f4"), answered)
    seen = protocol.image_input(IMAGE, GRAY_SHAPE)[0]  # the decoding the server did
    assert np.abs(decode_input(sample["input"], row["input_shape"]) - seen).max() <= 0.5 / 255 + 1e-6
    assert row["input_mean"] == pytest.approx(seen.mean(), abs=1e-6)


def test_a_batch_is_logged_as_one_prediction_with_a_sample_each(server):
    batch = np.stack([SAMPLE[0], 1 - SAMPLE[0], SAMPLE[0] / 2])
    body = json.dumps({"instances": batch.tolist()}).encode()
    status, headers, answer = server.request("POST", "/invocations", body, JSON)
    assert status == 200
    (row,) = query(server, "SELECT * FROM predictions WHERE request_id = ?", headers["x-request-id"])
    samples = query(server, "SELECT * FROM samples WHERE prediction_id = ? ORDER BY sample_index", row["id"])
    assert row["n_samples"] == 3 and [sample["sample_index"] for sample in samples] == [0, 1, 2]
    predictions = np.array(json.loads(answer)["predictions"], np.float32)
    for sample, probabilities, seen in zip(samples, predictions, batch):
        assert np.array_equal(np.frombuffer(sample["probabilities"], "<f4"), probabilities)
        assert np.abs(decode_input(sample["input"], "8,8,1") - seen).max() <= 0.5 / 255 + 1e-6


def test_predict_takes_a_raw_or_multipart_image_and_answers_labels(server):
    status, headers, body = server.request("POST", "/predict?k=2", IMAGE, {"Content-Type": "image/png"})
    answer = json.loads(body)
    assert status == 200 and headers["x-model-version"] == "1"
    assert answer["request_id"] == headers["x-request-id"] and answer["model_version"] == "1"
    assert len(answer["top_k"]) == 2 and answer["label"] == answer["top_k"][0]["label"]
    assert set(answer["probabilities"]) == set(GRAY_CLASSES)
    form, form_headers = multipart({"note": (None, b"hello"), "file": ("digit.png", IMAGE)})
    status, _, body = server.request("POST", "/predict", form, form_headers)
    assert status == 200 and json.loads(body)["probabilities"] == answer["probabilities"]
    assert len(json.loads(body)["top_k"]) == 3  # the default k


def test_feedback_records_the_true_label_of_a_logged_prediction(server):
    _, headers, _ = server.request("POST", "/predict", IMAGE, {"Content-Type": "image/png"})
    feedback = json.dumps({"request_id": headers["x-request-id"], "label": "7"}).encode()
    status, _, body = server.request("POST", "/feedback", feedback, JSON)
    assert status == 200
    assert json.loads(body) == {"request_id": headers["x-request-id"], "label": "7", "index": 0, "recorded": True}
    unknown = server.request("POST", "/feedback", json.dumps({"request_id": "nobody", "label": "7"}).encode(), JSON)
    assert unknown[0] == 404 and "nobody" in error_of(*unknown[::2])["message"]
    not_a_class = json.dumps({"request_id": headers["x-request-id"], "label": "cat"}).encode()
    status, _, body = server.request("POST", "/feedback", not_a_class, JSON)
    assert status == 400 and "not a class" in error_of(status, body)["message"]


def test_feedback_may_name_one_sample_of_a_batch_by_its_index(server):
    batch = json.dumps({"instances": np.concatenate([SAMPLE] * 3).tolist()}).encode()
    request_id = server.request("POST", "/invocations", batch, JSON)[1]["x-request-id"]

    def feedback(**fields) -> tuple[int, dict]:
        status, _, body = server.request("POST", "/feedback", json.dumps({"request_id": request_id} | fields).encode())
        return status, json.loads(body)

    assert feedback(label="2", index=2) == (200, {"request_id": request_id, "label": "2", "index": 2, "recorded": True})
    assert feedback(label="5")[0] == 200  # index 0 by default
    status, answer = feedback(label="2", index=3)
    assert status == 400 and "index 3 is out of range" in answer["message"] and "0 to 2" in answer["message"]
    for index in (-1, "1", 1.0, True, None):
        status, answer = feedback(label="2", index=index)
        assert status == 400 and "must be a non-negative integer" in answer["message"], index
    logged = query(server, "SELECT sample_index, true_label FROM feedback WHERE request_id = ? ORDER BY id", request_id)
    assert logged == [(2, "2"), (0, "5")]


def test_ping_ready_version_and_metrics(server, registry):
    assert server.request("GET", "/ping")[::2] == (200, b"alive\n")
    assert json.loads(server.request("GET", "/ready")[2]) == {"ready": True, "model_version": "1"}
    version = json.loads(server.request("GET", "/version")[2])
    assert version | {"loaded_at": 0} == {
        "name": "tiny",
        "version": "1",
        "alias": "champion",
        "run_id": "run-1",
        "model_uri": "models:/tiny@champion",
        "loaded_at": 0,
        "last_error": None,
        "fetch_peak_rss_bytes": registry.peak_rss_bytes,
        "registry_reachable": True,
    }
    assert server.metric("rtdeploy_fetch_peak_rss_bytes") == registry.peak_rss_bytes
    assert server.metric('rtdeploy_requests_total{endpoint="ping",status="200"}') >= 1


@pytest.mark.parametrize(
    "method, path, body, headers, status, words",
    [
        ("POST", "/predict?k=%C2%B2", IMAGE, {}, 400, "k='²' must be a positive integer"),  # was 500
        ("POST", "/predict?k=0", IMAGE, {}, 400, "positive integer"),
        ("POST", "/predict?k=" + "9" * 5000, IMAGE, {}, 400, "positive integer"),  # was 500 (int() refuses)
        ("POST", "/predict", *multipart({"note": (None, b"x")}), 400, "no file field named 'file'"),
        ("POST", "/predict", b"--X\r\n", {"Content-Type": "multipart/form-data"}, 400, "Missing boundary"),  # was 500
        ("POST", "/predict", b"GIF89a not really", {"Content-Type": "image/png"}, 400, "not a readable PNG or JPEG"),
        ("POST", "/predict", b"", {"Content-Type": "image/png"}, 400, "empty"),
        ("POST", "/invocations", b"{not json", JSON, 400, "not valid JSON"),
        ("POST", "/invocations", b'{"dataframe_split": {"columns": 5, "data": [[1]]}}', JSON, 400, "columns"),  # 500
        ("POST", "/invocations", b"<xml/>", {"Content-Type": "application/xml"}, 415, "not supported"),
        ("POST", "/feedback", b"[]", JSON, 400, "request_id"),
        ("GET", "/invocations", None, {}, 405, "GET is not allowed on /invocations; use POST"),  # was plain text
        ("GET", "/no-such-thing", None, {}, 404, "no endpoint at /no-such-thing"),  # was plain text
        ("GET", "/ping", None, {"X-Request-Id": "é".encode().decode("latin-1")}, 400, "X-Request-Id"),
        ("GET", "/ping", None, {"X-Request-Id": "x" * 100_000}, 400, "X-Request-Id"),  # was echoed back
        ("GET", "/ping", None, {"X-Request-Id": "two words"}, 400, "X-Request-Id"),
    ],
    ids=[
        "k-superscript",
        "k-zero",
        "k-huge",
        "form-no-file",
        "form-no-boundary",
        "not-an-image",
        "empty-image",
        "not-json",
        "columns-not-a-list",
        "xml",
        "feedback-not-object",
        "wrong-method",
        "unknown-path",
        "id-non-ascii",
        "id-huge",
        "id-space",
    ],
)
def test_a_client_mistake_is_a_4xx_json_naming_it(server, method, path, body, headers, status, words):
    got, answer_headers, answer = server.request(method, path, body, headers)
    assert got == status, answer
    assert words in error_of(got, answer)["message"]
    assert answer_headers["x-request-id"] and answer_headers["content-type"] == "application/json"
    if status == 405:
        assert answer_headers["allow"] == "POST"


def refusals(server: InProcessServer, request_id: str) -> list[tuple]:
    sql = "SELECT endpoint, status, kind, replica FROM refusals WHERE request_id = ?"
    return [
        (endpoint, status, kind)
        for endpoint, status, kind, replica in query(server, sql, request_id)
        if replica == f"127.0.0.1:{server.port}:{os.getpid()}"
    ]


def wait_for_refusal(server: InProcessServer, request_id: str) -> list[tuple]:
    """A refusal is committed with the next group, after its answer went out."""
    wait_until(lambda: refusals(server, request_id), f"the refusal of {request_id} to be logged")
    return refusals(server, request_id)


@pytest.mark.parametrize(
    "method, path, body, headers, refusal",
    [
        ("POST", "/invocations", b"{not json", JSON, ("invocations", 400, "BAD_REQUEST")),
        ("POST", "/predict", b"GIF89a", {"Content-Type": "image/png"}, ("predict", 400, "BAD_REQUEST")),
        (
            "POST",
            "/invocations",
            b"<xml/>",
            {"Content-Type": "application/xml"},
            ("invocations", 415, "UNSUPPORTED_MEDIA_TYPE"),
        ),
        ("POST", "/feedback", b'{"request_id": "nobody", "label": "1"}', JSON, ("feedback", 404, "NOT_FOUND")),
        ("GET", "/invocations", None, {}, ("invocations", 405, "METHOD_NOT_ALLOWED")),
        ("GET", "/no-such-thing", None, {}, ("other", 404, "NOT_FOUND")),
    ],
    ids=["bad-json", "bad-image", "media-type", "feedback-unknown-id", "method", "path"],
)
def test_every_refused_request_is_logged_by_kind(server, method, path, body, headers, refusal):
    request_id = f"refused-{time.monotonic_ns()}"
    status, answer_headers, _ = server.request(method, path, body, headers | {"X-Request-Id": request_id})
    assert status == refusal[1] and answer_headers["x-request-id"] == request_id
    assert wait_for_refusal(server, request_id) == [refusal]


def test_a_refused_request_id_is_logged_under_the_id_the_answer_gave_instead(server):
    status, headers, _ = server.request("GET", "/ping", None, {"X-Request-Id": "two words"})
    assert status == 400 and wait_for_refusal(server, headers["x-request-id"]) == [("ping", 400, "BAD_REQUEST")]


def test_an_answered_request_is_no_refusal(server):
    _, headers, _ = server.request("POST", "/invocations", INSTANCES, JSON)
    server.request("POST", "/invocations", b"{not json", JSON | {"X-Request-Id": "a-later-refusal"})
    wait_for_refusal(server, "a-later-refusal")  # committed after the answered request's rows
    assert refusals(server, headers["x-request-id"]) == []


def test_a_bug_of_ours_is_a_500_json_and_the_server_keeps_serving(server, monkeypatch, caplog):
    def broken(model, batch):
        raise RuntimeError("a bug")

    monkeypatch.setattr(server.plane.engine, "predict", broken)
    status, headers, body = server.request("POST", "/invocations", INSTANCES, JSON)
    assert status == 500 and error_of(status, body) == {
        "error_code": "INTERNAL_ERROR",
        "message": "internal server error",
    }
    assert headers["x-request-id"] and "a bug" in caplog.text  # the traceback is in the server's log
    assert wait_for_refusal(server, headers["x-request-id"]) == [("invocations", 500, "INTERNAL_ERROR")]
    monkeypatch.undo()
    assert server.request("POST", "/invocations", INSTANCES, JSON)[0] == 200
    assert server.metric('rtdeploy_errors_total{endpoint="invocations",kind="INTERNAL_ERROR"}') >= 1


def test_a_new_champion_is_served_after_the_next_poll(server, registry):
    registry.aliases["champion"] = "2"
    try:
        server.server.follower.check_once()  # a poll, run by the test instead of the polling thread
        assert server.request("POST", "/invocations", INSTANCES, JSON)[1]["x-model-version"] == "2"
    finally:
        registry.aliases["champion"] = "1"
        server.server.follower.check_once()


def test_not_ready_answers_503_with_retry_after_and_the_reason(registry, tmp_path):
    registry.aliases["broken"] = "3"
    broken = InProcessServer(registry, tmp_path / "p.db", model_uri="models:/tiny@broken")
    try:
        for method, path, body in [
            ("GET", "/ready", None),
            ("POST", "/invocations", INSTANCES),
            ("GET", "/version", None),
        ]:
            status, headers, answer = broken.request(method, path, body, JSON)
            assert status == 503 and headers["retry-after"] == "1", path
            assert "models:/tiny/3 cannot be loaded" in error_of(status, answer)["message"]
            assert wait_for_refusal(broken, headers["x-request-id"]) == [(path[1:], 503, "UNAVAILABLE")]
        assert broken.request("GET", "/ping")[0] == 200
    finally:
        broken.stop()


def wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, f"waited 30 s for {what}"
        time.sleep(0.01)


def test_at_capacity_a_prediction_gets_503_with_retry_after(registry, tmp_path):
    tight = InProcessServer(registry, tmp_path / "p.db", max_queue=1)
    try:
        with socket.create_connection(("127.0.0.1", tight.port)) as slow:  # sends half its body, holds the slot
            slow.sendall(b'POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{"instances"')
            wait_until(lambda: tight.plane.admission.in_flight == 1, "the slow request to be admitted")
            status, headers, body = tight.request("POST", "/invocations", INSTANCES, JSON)
            assert status == 503 and headers["retry-after"] == "1"
            assert "at capacity (1 requests in progress)" in error_of(status, body)["message"]
            assert wait_for_refusal(tight, headers["x-request-id"]) == [("invocations", 503, "UNAVAILABLE")]
            assert tight.request("GET", "/ping")[0] == 200  # only predictions are bounded
        wait_until(lambda: tight.plane.admission.in_flight == 0, "the slow client's slot to be freed")
        assert tight.request("POST", "/invocations", INSTANCES, JSON)[0] == 200
    finally:
        tight.stop()


def test_a_body_over_the_limit_is_refused_with_413_declared_or_streamed(registry, tmp_path):
    small = InProcessServer(registry, tmp_path / "p.db", max_body_bytes=2000)
    try:
        big = b" " * 3000 + INSTANCES
        status, headers, body = small.request("POST", "/invocations", big, JSON)
        assert (
            status == 413
            and f"body of {len(big)} bytes is over the 2000-byte limit" in error_of(status, body)["message"]
        )
        assert wait_for_refusal(small, headers["x-request-id"]) == [("invocations", 413, "PAYLOAD_TOO_LARGE")]
        chunks = (big[i : i + 100] for i in range(0, len(big), 100))  # no Content-Length: counted as it streams
        status, _, body = small.request("POST", "/invocations", chunks, JSON)  # sent chunked
        assert status == 413 and "2000-byte limit" in error_of(status, body)["message"]
        form, headers = multipart({"file": ("big.png", b"\0" * 3000)})
        assert small.request("POST", "/predict", form, headers)[0] == 413  # a form counts as a body too
        assert small.request("POST", "/invocations", INSTANCES, JSON)[0] == 200
    finally:
        small.stop()


def test_heartbeats_at_start_every_interval_and_at_stop_carry_memory_model_queue_and_requests(registry, tmp_path):
    beating = InProcessServer(registry, tmp_path / "p.db", heartbeat_seconds=0.05, max_queue=4)

    def beats() -> list[dict]:
        return query(beating, "SELECT * FROM heartbeats ORDER BY id")

    try:
        first = beats()[0]  # written before the server took requests
        assert (first["model_name"], first["model_version"], first["queue_depth"], first["requests_total"]) == (
            "tiny",
            "1",
            0,
            0,
        )
        with socket.create_connection(("127.0.0.1", beating.port)) as slow:  # one request in progress
            slow.sendall(b'POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{"instances"')
            wait_until(
                lambda: any(beat["queue_depth"] == 1 for beat in beats()), "a heartbeat of the request in progress"
            )
        wait_until(lambda: beating.plane.admission.in_flight == 0, "the slow client's request to end")
        assert [beating.request("POST", "/invocations", INSTANCES, JSON)[0] for _ in range(2)] == [200, 200]
        answered = beating.plane.requests_total
    finally:
        beating.stop()
    logged = beats()
    assert len(logged) >= 4 and logged[-1]["requests_total"] == answered == 3  # the slow one (400) and two
    assert [beat["requests_total"] for beat in logged] == sorted(beat["requests_total"] for beat in logged)
    assert [beat["time"] for beat in logged] == sorted(beat["time"] for beat in logged)
    assert {beat["replica"] for beat in logged} == {f"127.0.0.1:{beating.port}:{os.getpid()}"}
    assert all(20_000_000 < beat["rss_bytes"] < 4_000_000_000 for beat in logged)  # this test process's


def test_log_inputs_is_the_share_of_requests_whose_inputs_the_server_keeps(registry, tmp_path):
    for share, kept in [(0.0, 0), (0.5, 2)]:
        sampling = InProcessServer(registry, tmp_path / f"p{share}.db", log_inputs=share)
        try:
            assert [sampling.request("POST", "/invocations", INSTANCES, JSON)[0] for _ in range(4)] == [200] * 4
            counted = "SELECT count(*), count(input) FROM samples"
            assert query(sampling, counted) == [(4, kept)], share  # probabilities always, inputs as configured
        finally:
            sampling.stop()


latin1_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=60)
header_values = st.one_of(latin1_text, st.sampled_from(["", "x" * 300, "y" * 20_000]))
request_bodies = st.one_of(
    st.none(),
    st.binary(max_size=200),
    st.just(INSTANCES),
    st.just(IMAGE),
    st.builds(
        lambda name, content: multipart({name: ("f.png", content)})[0],
        st.sampled_from(["file", "x"]),
        st.sampled_from([IMAGE, b"", b"junk"]),
    ),
    st.fixed_dictionaries({"request_id": st.text(max_size=10), "label": st.text(max_size=3)}).map(
        lambda value: json.dumps(value).encode()
    ),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
    path=st.sampled_from(["/invocations", "/predict", "/feedback", "/ping", "/ready", "/version", "/metrics", "/x"]),
    query=st.lists(st.tuples(st.sampled_from(["k", "x", "K", "k[]"]), latin1_text), max_size=3),
    headers=st.dictionaries(
        st.sampled_from(["Content-Type", "X-Request-Id", "Accept", "Accept-Encoding", "X-Model-Version"]),
        header_values,
        max_size=4,
    ),
    content_type=st.sampled_from(
        [
            "application/json",
            "text/csv",
            "image/png",
            "multipart/form-data; boundary=BOUNDARY",
            "multipart/form-data",
            "application/json; charset=utf-8",
            None,
        ]
    ),
    body=request_bodies,
)
def test_fuzzed_requests_never_get_a_5xx_and_every_4xx_is_json(
    server, method, path, query, headers, content_type, body
):
    from urllib.parse import quote

    if content_type is not None:
        headers = {"Content-Type": content_type} | headers
    target = path + ("?" + "&".join(f"{quote(key)}={quote(value)}" for key, value in query) if query else "")
    status, answer_headers, answer = server.request(method, target, body, headers)
    assert status < 500, (status, answer[:300])
    if status >= 400:
        error_of(status, answer)
    given_id = headers.get("X-Request-Id")
    if status < 400 and given_id:
        assert answer_headers["x-request-id"] == given_id


@settings(max_examples=60, deadline=None)
@given(
    declared=st.one_of(
        st.sampled_from(["²", "-1", "1e3", " 12", "", "9" * 30, "0x10", "12, 12"]), st.integers(0, 400).map(str)
    ),
    body=st.sampled_from([INSTANCES[:100], b"", b"{}"]),
    path=st.sampled_from(["/invocations", "/predict", "/feedback"]),
)
def test_a_false_content_length_never_gets_a_5xx(server, declared, body, path):
    """Whatever Content-Length says: the app's JSON 4xx, the HTTP parser's own 400, or (body short) no answer."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as connection:
        connection.sendall(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {declared}\r\nConnection: close\r\n"
            "Content-Type: application/json\r\n\r\n".encode("latin-1")
            + body
        )
        connection.shutdown(socket.SHUT_WR)  # a body shorter than declared ends here
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    if not answer:
        return  # the client hung up before its body was complete: nobody to answer
    status_line, _, rest = answer.partition(b"\r\n")
    status = int(status_line.split()[1])
    assert status < 500, answer[:300]
    if b"Invalid HTTP request received." not in rest:  # uvicorn's parser refused the message before the app saw it
        assert status < 400 or b'"error_code"' in rest
