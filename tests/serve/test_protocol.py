"""The scoring formats without a server: bytes in, a float32 batch or a client error (ServeError 4xx) out.

Every MLflow scoring format gives the same batch; whatever bytes and content
type arrive, parsing ends in a batch of the model's shape or in a 4xx naming
the problem, never in another exception (which the server would answer 500).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from steps.serve import protocol
from steps.serve.errors import ServeError

SHAPE = (2, 2, 1)
SAMPLES = np.arange(12, dtype=np.float32).reshape(3, 2, 2, 1) / 12
FLAT = SAMPLES.reshape(3, -1).tolist()
COLUMNS = ["a", "b", "c", "d"]


def parse(payload, content_type="application/json"):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return protocol.parse_invocation(body, content_type, SHAPE)


@pytest.mark.parametrize(
    "payload",
    [
        {"instances": SAMPLES.tolist()},
        {"inputs": SAMPLES.tolist()},
        {"inputs": {"image": SAMPLES.tolist()}},
        {"instances": FLAT, "params": {"ignored": True}},
        {"dataframe_split": {"columns": COLUMNS, "data": FLAT}},
        {"dataframe_split": {"data": FLAT}},
        {"dataframe_records": [dict(zip(COLUMNS, row)) for row in FLAT]},
        {"dataframe_split": {"columns": ["image"], "data": [[sample] for sample in SAMPLES.tolist()]}},
        {"instances": [{"image": sample} for sample in SAMPLES.tolist()]},
        b"a,b,c,d\n" + "\n".join(",".join(map(str, row)) for row in FLAT).encode(),
    ],
    ids=[
        "instances",
        "inputs",
        "named-input",
        "flat+params",
        "split",
        "split-no-columns",
        "records",
        "tensor-column",
        "instance-records",
        "csv",
    ],
)
def test_every_scoring_format_gives_the_same_batch(payload):
    content_type = "text/csv" if isinstance(payload, bytes) else "application/json; charset=utf-8"
    batch = parse(payload, content_type)
    assert batch.dtype == np.float32
    np.testing.assert_allclose(batch, SAMPLES, rtol=1e-6)


@pytest.mark.parametrize(
    "payload, content_type, status, words",
    [
        (b"{not json", "application/json", 400, "not valid JSON"),
        ([1, 2], "application/json", 400, "must be a JSON object"),
        ({"instancez": []}, "application/json", 400, "unknown keys"),
        ({"instances": [], "inputs": []}, "application/json", 400, "exactly one"),
        ({"instances": [[1, 2, 3]]}, "application/json", 400, "expected (n, 2, 2, 1)"),
        ({"instances": [["a"]]}, "application/json", 400, "not a numeric array"),
        ({"instances": []}, "application/json", 400, "expected"),
        ({"instances": [[1e39, 0, 0, 0]]}, "application/json", 400, "NaN or infinite"),
        ({"inputs": {"x": [1], "y": [2]}}, "application/json", 400, "one input"),
        ({"dataframe_split": [1]}, "application/json", 400, "must be an object"),
        ({"dataframe_split": {"columns": 5, "data": [[1]]}}, "application/json", 400, "columns must be a list"),
        ({"dataframe_split": {"columns": ["a", "b"], "data": [[1]]}}, "application/json", 400, "2 values"),
        ({"dataframe_records": [{"a": 1}, {"b": 2}]}, "application/json", 400, "same keys"),
        ({"dataframe_records": [1]}, "application/json", 400, "list of objects"),
        (b"a,b\n", "text/csv", 400, "header row and at least one row"),
        (b"a,b\n1,x", "text/csv", 400, "not a numeric array"),
        (b"\xff\xfe", "text/csv", 400, "UTF-8"),
        (b"<xml/>", "application/xml", 415, "not supported"),
    ],
)
def test_a_bad_body_is_a_4xx_that_names_the_problem(payload, content_type, status, words):
    with pytest.raises(ServeError) as raised:
        parse(payload, content_type)
    assert raised.value.status == status and words in raised.value.message


json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(
            st.sampled_from(list(protocol.ALLOWED_KEYS) + ["columns", "data", "index", "x"]), children, max_size=3
        )
    ),
    max_leaves=50,
)


@settings(max_examples=300, deadline=None)
@given(
    body=st.one_of(st.binary(max_size=300), json_values.map(lambda value: json.dumps(value).encode())),
    content_type=st.one_of(
        st.sampled_from(["application/json", "text/csv", "", "application/json; charset=latin-1", "TEXT/CSV"]),
        st.text(max_size=30),
    ),
)
def test_any_body_and_content_type_give_a_batch_or_a_client_error(body, content_type):
    try:
        batch = protocol.parse_invocation(body, content_type, SHAPE)
    except ServeError as error:
        assert 400 <= error.status < 500 and error.message
        return
    assert batch.dtype == np.float32 and batch.shape[1:] == SHAPE and len(batch) >= 1
    assert np.isfinite(batch).all()


@settings(max_examples=300, deadline=None)
@given(body=st.one_of(st.binary(max_size=200), json_values.map(lambda value: json.dumps(value).encode())))
def test_any_feedback_body_gives_an_id_and_a_label_or_a_client_error(body):
    try:
        request_id, label = protocol.parse_feedback(body)
    except ServeError as error:
        assert error.status == 400 and "request_id" in error.message
        return
    assert isinstance(request_id, str) and isinstance(label, str)


def test_predict_answers_the_label_every_probability_and_the_k_most_likely():
    answer = protocol.predict_answer(np.array([0.1, 0.7, 0.2], np.float32), ["a", "b", "c"], 2, "r1", "4")
    assert answer["label"] == "b" and answer["request_id"] == "r1" and answer["model_version"] == "4"
    assert [entry["label"] for entry in answer["top_k"]] == ["b", "c"]
    assert answer["probabilities"] == pytest.approx({"a": 0.1, "b": 0.7, "c": 0.2})
    assert len(protocol.predict_answer(np.array([0.5, 0.5], np.float32), ["a", "b"], 99, "r", "1")["top_k"]) == 2


def test_predict_refuses_a_model_it_cannot_make_images_for():
    with pytest.raises(ServeError, match="1 or 3 channels; this one takes \\(4, 4, 2\\): send its pixels"):
        protocol.image_input(b"anything", (4, 4, 2))
