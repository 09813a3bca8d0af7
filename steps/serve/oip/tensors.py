"""The Open Inference Protocol without a transport: model metadata, input tensors to a batch, outputs to tensors.

The served model has one input, `input` (FP32, [-1, *sample_shape]; int8
deployables quantize inside the runtime, so clients always send floats; or
BYTES, [n]: n encoded PNG/JPEG images, decoded as /predict and training
decode them), and two outputs: `probabilities` (FP32, [-1, n_classes]), returned when no
output is asked for, and `label` (BYTES, [-1]), the most likely class's
name. Data is row-major, raw (little-endian bytes; a BYTES element is a
4-byte little-endian length and its bytes) or as JSON numbers. Every
mistake is a `ServeError` naming it; the REST and gRPC faces give it their
own form.
"""

from __future__ import annotations

import base64
import binascii
import importlib.metadata
from dataclasses import dataclass
from math import prod

import numpy as np

from steps.modeling.litert_runtime import InputError, to_batch
from steps.serve.errors import BadRequest, NotFound
from steps.serve.protocol import images_input
from steps.serve.runtime import ServedModel

SERVER_NAME = "rtdeploy"
EXTENSIONS = ("binary_tensor_data",)  # the REST binary extension (gRPC's raw contents need none)
PLATFORM = "tflite"
INPUT = "input"
PROBABILITIES = "probabilities"
LABEL = "label"
OUTPUTS = (PROBABILITIES, LABEL)
DEFAULT_OUTPUTS = (PROBABILITIES,)
FP32 = "FP32"
BYTES = "BYTES"
FP32_SIZE = 4
MAX_DIMENSIONS = 8


@dataclass(frozen=True)
class InputTensor:
    """One input as a request named it; data is raw bytes, or the JSON/protobuf values as a (nested) list."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: bytes | list


@dataclass(frozen=True)
class OutputTensor:
    name: str
    datatype: str
    shape: tuple[int, ...]
    raw: bytes  # row-major, as the binary extension and gRPC's raw_output_contents carry it
    values: list  # the same, flat, for a JSON answer


def server_metadata() -> dict:
    """The server's name, version and extensions, as /v2 and ServerMetadata answer them."""
    try:
        version = importlib.metadata.version("rtdeploy")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that was never installed
        version = "unknown"
    return {"name": SERVER_NAME, "version": version, "extensions": list(EXTENSIONS)}


def check_model(model: ServedModel, name: str, version: str | None) -> None:
    """The request's model must be the served one: its registered name, and its version if one is given."""
    if name != model.ref.name:
        raise NotFound(f"model {name!r} is not served here; this server serves {model.ref.name!r}")
    if version and version != model.ref.version:
        raise NotFound(
            f"version {version!r} of {name!r} is not served here; this server serves version {model.ref.version} "
            "(the one its alias points to): ask for that version, or for none"
        )


def model_metadata(model: ServedModel) -> dict:
    """The model's name, version, platform and tensors, as /v2/models/{name} and ModelMetadata answer them."""
    return {
        "name": model.ref.name,
        "versions": [model.ref.version],
        "platform": PLATFORM,
        "inputs": [{"name": INPUT, "datatype": FP32, "shape": [-1, *model.sample_shape]}],
        "outputs": [
            {"name": PROBABILITIES, "datatype": FP32, "shape": [-1, len(model.class_names)]},
            {"name": LABEL, "datatype": BYTES, "shape": [-1]},
        ],
    }


def input_batch(inputs: list[InputTensor], sample_shape: tuple[int, ...]) -> np.ndarray:
    """The request's one input as a float32 batch (n, *sample_shape); shape [n, prod(sample_shape)] is taken too."""
    expected = f"[n, {', '.join(map(str, sample_shape))}]"
    if len(inputs) != 1:
        raise BadRequest(f"the model has one input, {INPUT!r} ({FP32}, shape {expected}); got {len(inputs)} inputs")
    tensor = inputs[0]
    if tensor.name != INPUT:
        raise BadRequest(f"the model has no input {tensor.name[:40]!r}; its one input is {INPUT!r}")
    if tensor.datatype == BYTES:
        return images_input(encoded_images(tensor), sample_shape)
    if tensor.datatype != FP32:
        raise BadRequest(
            f"input {INPUT!r} has datatype {tensor.datatype[:20]!r}; the model takes {FP32} (pixels as floats) "
            f"or {BYTES} (encoded PNG/JPEG images)"
        )
    shape, flat = tensor.shape, prod(sample_shape)
    if not shape or len(shape) > MAX_DIMENSIONS or any(type(d) is not int or d < 0 for d in shape):
        raise BadRequest(f"input {INPUT!r} has shape {list(shape)[: MAX_DIMENSIONS + 1]}; send {expected}")
    # Checked before any array is made: numpy refuses even to reshape to [0, 10**6, 10**6, ...].
    if shape[1:] not in (sample_shape, (flat,)) and shape != sample_shape:
        raise BadRequest(f"input {INPUT!r} has shape {list(shape)}; the model takes {expected} or [n, {flat}]")
    elements = prod(shape)
    if isinstance(tensor.data, bytes):
        if len(tensor.data) != elements * FP32_SIZE:
            raise BadRequest(
                f"input {INPUT!r} holds {len(tensor.data)} bytes, but shape {list(shape)} of {FP32} takes "
                f"{elements * FP32_SIZE}; send the whole tensor, row-major, little-endian"
            )
        array = np.frombuffer(tensor.data, "<f4").reshape(shape)
    else:
        try:
            with np.errstate(over="ignore"):  # beyond float32: inf, refused by to_batch with a clear message
                array = np.asarray(tensor.data, np.float32)
        except (TypeError, ValueError, OverflowError) as error:
            raise BadRequest(f"input {INPUT!r}'s data are not {FP32} numbers ({error}); send numbers, row-major")
        if array.size != elements:
            raise BadRequest(
                f"input {INPUT!r} has {array.size} values, but its shape {list(shape)} holds {elements}; "
                "send shape and data that agree"
            )
        array = array.reshape(shape)
    try:
        return to_batch(array, sample_shape)
    except InputError as error:
        raise BadRequest(f"input {INPUT!r}: {error}")


def encoded_images(tensor: InputTensor) -> list[bytes]:
    """The BYTES input's elements: raw (each a 4-byte little-endian length and its bytes), gRPC's bytes_contents,
    or JSON strings holding base64."""
    if isinstance(tensor.data, bytes):
        items, offset = [], 0
        while offset < len(tensor.data):
            if offset + 4 > len(tensor.data):
                raise BadRequest(f"input {INPUT!r}: BYTES data ends inside an element's 4-byte length")
            size = int.from_bytes(tensor.data[offset : offset + 4], "little")
            items.append(tensor.data[offset + 4 : offset + 4 + size])
            offset += 4 + size
        if offset != len(tensor.data):
            raise BadRequest(f"input {INPUT!r}: BYTES data ends inside an element; each is its length, then its bytes")
    elif all(isinstance(item, bytes) for item in tensor.data):
        items = list(tensor.data)
    elif all(isinstance(item, str) for item in tensor.data):
        try:
            items = [base64.b64decode(item, validate=True) for item in tensor.data]
        except binascii.Error as error:
            raise BadRequest(f"input {INPUT!r}: BYTES data in JSON are base64 strings ({error})")
    else:
        raise BadRequest(f"input {INPUT!r}: BYTES data are encoded images (base64 strings in JSON)")
    if tensor.shape != (len(items),) or not items:
        raise BadRequest(
            f"input {INPUT!r} of {BYTES} has shape {list(tensor.shape)} and {len(items)} elements; send shape [n] "
            "with n >= 1 encoded images"
        )
    return items


def requested_outputs(names: list[str]) -> tuple[str, ...]:
    """The outputs a request asked for, in its order; none named: the probabilities."""
    for name in names:
        if name not in OUTPUTS:
            raise BadRequest(f"the model has no output {name[:40]!r}; its outputs are {', '.join(OUTPUTS)}")
    return tuple(dict.fromkeys(names)) or DEFAULT_OUTPUTS


def output_tensors(probabilities: np.ndarray, class_names: list[str], names: tuple[str, ...]) -> list[OutputTensor]:
    """The named outputs of a batch's probabilities, each raw and as values."""
    tensors = []
    for name in names:
        if name == PROBABILITIES:
            data = probabilities.astype("<f4", copy=False)
            tensors.append(OutputTensor(name, FP32, data.shape, data.tobytes(), data.ravel().tolist()))
        else:
            labels = [class_names[i] for i in probabilities.argmax(axis=1)]
            encoded = [label.encode() for label in labels]
            raw = b"".join(len(item).to_bytes(4, "little") + item for item in encoded)
            tensors.append(OutputTensor(name, BYTES, (len(labels),), raw, labels))
    return tensors
