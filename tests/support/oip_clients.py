"""Triton's official clients (tritonclient.http and tritonclient.grpc) against a running server: prints one JSON
line with what each transport saw. tests/test_serve.py runs it in a process of its own: tritonclient's protobuf
module defines the same `inference.*` messages as the server's stubs, and one process cannot hold both.

    python tests/oip_clients.py HTTP_HOST:PORT GRPC_HOST:PORT MODEL_NAME PIXELS.npy
"""

from __future__ import annotations

import json
import sys

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

BATCH = 32  # samples per infer call


def metadata_of(client, model: str) -> dict:
    metadata = client.get_model_metadata(model)
    if not isinstance(metadata, dict):  # gRPC answers a protobuf message
        metadata = {
            "name": metadata.name,
            "versions": list(metadata.versions),
            "inputs": [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in metadata.inputs],
            "outputs": [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in metadata.outputs],
        }
    return {key: metadata[key] for key in ("name", "versions", "inputs", "outputs")}


def classes(client, module, model: str, pixels: np.ndarray) -> list[str]:
    """Every sample's label, sent as binary tensors BATCH at a time, and the probabilities' argmax beside it."""
    labels = []
    for start in range(0, len(pixels), BATCH):
        batch = pixels[start : start + BATCH]
        tensor = module.InferInput("input", list(batch.shape), "FP32")
        if module is httpclient:
            tensor.set_data_from_numpy(batch, binary_data=True)
            outputs = [module.InferRequestedOutput(n, binary_data=True) for n in ("label", "probabilities")]
        else:
            tensor.set_data_from_numpy(batch)
            outputs = [module.InferRequestedOutput(n) for n in ("label", "probabilities")]
        result = client.infer(model, [tensor], outputs=outputs, request_id=f"triton-{start}")
        names = [label.decode() for label in result.as_numpy("label")]
        argmax = result.as_numpy("probabilities").argmax(axis=1)
        assert result.as_numpy("probabilities").shape == (len(batch), 10)
        labels.extend(f"{name}={index}" for name, index in zip(names, argmax))
    return labels


def mistakes(client, module, model: str, pixels: np.ndarray) -> dict[str, str]:
    """Requests a client gets wrong, each -> the status the server answered (HTTP code or gRPC code name)."""

    def tensor(datatype="FP32", shape=(2, 8, 8, 1), data=None):
        data = pixels[:2] if data is None else data
        made = module.InferInput("input", list(shape), datatype)
        if module is httpclient:
            made.set_data_from_numpy(data, binary_data=True)
        else:
            made.set_data_from_numpy(data)
        return made

    cases = {
        "datatype": lambda: client.infer(model, [tensor("FP64", data=pixels[:2].astype(np.float64))]),
        "shape": lambda: client.infer(model, [tensor(shape=(2, 8, 4, 2), data=pixels[:2].reshape(2, 8, 4, 2))]),
        "unknown model": lambda: client.infer("no-such-model", [tensor()]),
        "unknown version": lambda: client.infer(model, [tensor()], model_version="999"),
        "truncated binary": lambda: client.infer(model, [truncated(tensor())]),
        "metadata of an unknown model": lambda: client.get_model_metadata("no-such-model"),
    }
    answers = {}
    for name, call in cases.items():
        try:
            call()
            answers[name] = "accepted"
        except InferenceServerException as error:
            answers[name] = f"{error.status()}: {error.message()}"
    return answers


def truncated(tensor):
    """The same input with its last 4 bytes cut (the declared size stays): a payload cut short on the way."""
    if hasattr(tensor, "_raw_data"):  # http: the binary tensor data extension
        tensor._raw_data = tensor._raw_data[:-4]
    else:  # grpc: raw_input_contents
        tensor._raw_content = tensor._raw_content[:-4]
    return tensor


def main() -> None:
    http_url, grpc_url, model, pixels_path = sys.argv[1:5]
    pixels = np.load(pixels_path).astype(np.float32)
    seen = {}
    for transport, module, url in (("http", httpclient, http_url), ("grpc", grpcclient, grpc_url)):
        client = module.InferenceServerClient(url)
        seen[transport] = {
            "live": client.is_server_live(),
            "ready": client.is_server_ready(),
            "model_ready": client.is_model_ready(model),
            "metadata": metadata_of(client, model),
            "classes": classes(client, module, model, pixels),
            "mistakes": mistakes(client, module, model, pixels),
            "still_ready": client.is_model_ready(model),
        }
        client.close()
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
