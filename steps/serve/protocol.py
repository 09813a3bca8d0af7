"""Request and response formats, framework-free: MLflow's scoring protocol, CSV, and image files.

`/invocations` accepts what a client of `mlflow models serve` sends: a JSON
object with exactly one of `instances`, `inputs`, `dataframe_split`,
`dataframe_records` (plus optional `params`), or CSV with a header row; it
answers `{"predictions": [[p_class0, p_class1, ...], ...]}`. `/predict`
takes one PNG/JPEG image, decoded as training decoded its images
(`steps.datasets.images`), and answers labels. Tables are read without pandas, which
would add 50 MB to the server for two list conversions. Every failure is a
`ServeError` naming what the client should change.
"""

from __future__ import annotations

import csv
import io

import numpy as np
import orjson

from steps.modeling.litert_runtime import InputError, to_batch
from steps.serve.errors import BadRequest, UnsupportedMediaType

INPUT_KEYS = ("instances", "inputs", "dataframe_split", "dataframe_records")
ALLOWED_KEYS = (*INPUT_KEYS, "params")
JSON_TYPES = ("application/json", "")
CSV_TYPES = ("text/csv",)
MAX_IMAGE_PIXELS = 4096 * 4096  # larger images are refused before decoding: 4 MB of PNG can hold gigabytes of pixels


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def parse_invocation(body: bytes, content_type: str | None, sample_shape: tuple[int, ...]) -> np.ndarray:
    """A float32 batch (n, *sample_shape) from an /invocations request body."""
    kind = media_type(content_type)
    if kind in CSV_TYPES:
        return _batch(_read_csv(body), sample_shape)
    if kind not in JSON_TYPES:
        raise UnsupportedMediaType(f"content type {kind!r} is not supported; send application/json or text/csv")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise BadRequest(f'body is not valid JSON ({error}); send an object like {{"instances": [...]}}')
    if not isinstance(payload, dict):
        raise BadRequest(
            f"body must be a JSON object with one of {', '.join(INPUT_KEYS)}; got {type(payload).__name__}"
        )
    unknown = sorted(set(payload) - set(ALLOWED_KEYS))
    if unknown:
        raise BadRequest(f"unknown keys {unknown}; use exactly one of {', '.join(INPUT_KEYS)} (and optionally params)")
    given = [key for key in INPUT_KEYS if key in payload]
    if len(given) != 1:
        raise BadRequest(f"send exactly one of {', '.join(INPUT_KEYS)}; got {given or 'none'}")
    key = given[0]
    value = payload[key]
    if key in ("instances", "inputs"):
        if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
            return _batch(_records(value, key), sample_shape)
        return _batch(value, sample_shape)
    if key == "dataframe_split":
        if not isinstance(value, dict) or not isinstance(value.get("data"), list):
            raise BadRequest('dataframe_split must be an object with "columns" and "data" (pandas orient="split")')
        columns, rows = value.get("columns"), value["data"]
        if columns is not None and not isinstance(columns, list):
            raise BadRequest("dataframe_split columns must be a list of column names")
        if columns is not None and any(not isinstance(row, list) or len(row) != len(columns) for row in rows):
            raise BadRequest(f"dataframe_split rows must each hold {len(columns)} values, one per column")
        return _batch(_cells(rows), sample_shape)
    if not isinstance(value, list) or not all(isinstance(record, dict) for record in value):
        raise BadRequest('dataframe_records must be a list of objects, one per row (pandas orient="records")')
    return _batch(_records(value, key), sample_shape)


def _records(records: list[dict], key: str) -> list:
    """Rows of a records table, columns in the order of the first record."""
    columns = records[0].keys() if records else {}.keys()
    if any(record.keys() != columns for record in records):
        raise BadRequest(f"every record of {key} needs the same keys as the first one")
    return _cells([[record[column] for column in columns] for record in records])


def _cells(rows: list) -> list:
    """A table with one column of tensors (each cell a whole sample) -> the samples; else the rows."""
    if rows and all(isinstance(row, list) and len(row) == 1 and isinstance(row[0], list) for row in rows):
        return [row[0] for row in rows]
    return rows


def _read_csv(body: bytes) -> list[list[str]]:
    try:
        rows = list(csv.reader(io.StringIO(body.decode("utf-8"))))
    except (UnicodeDecodeError, csv.Error) as error:
        raise BadRequest(f"body is not a UTF-8 CSV table ({error})")
    if len(rows) < 2:
        raise BadRequest("CSV body needs a header row and at least one row of numbers")
    return rows[1:]


def _batch(value, sample_shape: tuple[int, ...]) -> np.ndarray:
    if isinstance(value, dict):  # {"inputs": {"name": tensor}}: our models have one input
        if len(value) != 1:
            raise BadRequest(f"the model has one input; got named inputs {sorted(value)}")
        value = next(iter(value.values()))
    try:
        return to_batch(value, sample_shape)
    except InputError as error:
        raise BadRequest(str(error))


def format_predictions(probabilities: np.ndarray) -> bytes:
    return orjson.dumps({"predictions": probabilities}, option=orjson.OPT_SERIALIZE_NUMPY)


def image_input(data: bytes, sample_shape: tuple[int, ...]) -> np.ndarray:
    """One PNG/JPEG -> a batch of one for the model, decoded as in training (`steps.datasets.images`)."""
    return images_input([data], sample_shape)


def images_input(encoded: list[bytes], sample_shape: tuple[int, ...]) -> np.ndarray:
    """PNG/JPEG files -> a batch for the model, each decoded as in training (`steps.datasets.images`): /predict's
    one image, and the Open Inference Protocol's BYTES input."""
    if len(sample_shape) != 3 or sample_shape[-1] not in (1, 3):
        raise BadRequest(
            f"images are taken for models of 1 or 3 channels; this one takes {sample_shape}: send its pixels"
        )
    from steps.datasets.images import ImageError, decode_image  # Pillow (3 MB) only in servers that get images

    batch = np.empty((len(encoded), *sample_shape), np.float32)
    for index, data in enumerate(encoded):
        try:
            batch[index] = decode_image(data, sample_shape, max_pixels=MAX_IMAGE_PIXELS)
        except ImageError as error:
            raise BadRequest(str(error) if len(encoded) == 1 else f"image {index}: {error}")
    return batch


def predict_answer(probabilities: np.ndarray, class_names: list[str], k: int, request_id: str, version: str) -> dict:
    """/predict's answer for one image: the label, every class's probability and the k most likely."""
    order = np.argsort(probabilities)[::-1][: max(1, min(k, len(probabilities)))]
    top_k = [{"label": class_names[i], "probability": float(probabilities[i])} for i in order]
    return {
        "request_id": request_id,
        "model_version": version,
        "label": top_k[0]["label"],
        "probabilities": dict(zip(class_names, probabilities.tolist())),
        "top_k": top_k,
    }


def logged_request(body: bytes) -> tuple[str, int] | None:
    """/explain's JSON asking for a logged prediction's input, {"request_id": ..., "index": 0}: (id, index); None
    for any other JSON (an /invocations body, read by parse_invocation)."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None  # parse_invocation says what is wrong with it
    if not isinstance(payload, dict) or "request_id" not in payload:
        return None
    index = payload.get("index", 0)
    unknown = set(payload) - {"request_id", "index"}
    if unknown or not isinstance(payload["request_id"], str) or type(index) is not int or index < 0:
        raise BadRequest(
            'send {"request_id": "<id of a logged prediction>"} (and "index": <sample position>, 0 by default), '
            "or the sample itself as /invocations or /predict take it"
        )
    return payload["request_id"], index


def explain_answer(explanation, class_names: list[str], request_id: str, version: str, explained: str | None) -> dict:
    """/explain's answer: the class explained, every class's probability and the saliency map (input-shaped)."""
    return {
        "request_id": request_id,
        "explained_request_id": explained,
        "model_version": version,
        "label": class_names[explanation.target],
        "probabilities": dict(zip(class_names, explanation.probabilities.tolist())),
        "method": "occlusion",
        "saliency": explanation.saliency,
    }


def parse_feedback(body: bytes) -> tuple[str, str, int]:
    """/feedback's body -> (request id, true label, index of the sample in the request's batch, 0 by default)."""
    usage = (
        '{"request_id": "<X-Request-Id of the prediction>", "label": "<true class>"} '
        '(and "index": <sample position> for one sample of a batch, 0 by default)'
    )
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise BadRequest(f"body is not valid JSON ({error}); send {usage}")
    if not isinstance(payload, dict) or not isinstance(payload.get("request_id"), str) or "label" not in payload:
        raise BadRequest(f"send {usage}")
    index = payload.get("index", 0)
    if type(index) is not int or index < 0:  # not bool (an int subclass), not 1.0 or "1"
        raise BadRequest(
            f"index {str(index)[:40]!r} must be a non-negative integer: the sample's position in the batch"
        )
    return payload["request_id"], str(payload["label"]), index
