"""Run a .tflite classifier with LiteRT, alone or as an MLflow pyfunc model.

This file is also the pyfunc model's code ("models from code"): MLflow copies it
into every logged deployable and executes it on load, so a deployable needs
only mlflow, numpy, pandas and ai-edge-litert, never tensorflow and never this
package. Keep its imports to those.
"""

from __future__ import annotations

import threading
from math import prod

import mlflow
import numpy as np
import pandas as pd
from ai_edge_litert.interpreter import Interpreter

TFLITE_ARTIFACT = "tflite"  # key of the .tflite file in the pyfunc model's artifacts


class InputError(ValueError):
    """A batch that does not fit the model; the message says what was expected."""


class LiteRTClassifier:
    """Class probabilities from a .tflite classifier.

    LiteRT interpreters are not thread-safe, so each thread gets its own,
    built lazily from the same model bytes. int8/uint8 inputs and outputs are
    (de)quantized here, so callers always pass and get float32.
    """

    def __init__(self, model_content: bytes, num_threads: int = 1):
        self._model_content = model_content
        self._num_threads = num_threads
        self._local = threading.local()
        interpreter = self._interpreter()  # fail now, not on the first request, if the file is bad
        input_detail = interpreter.get_input_details()[0]
        output_detail = interpreter.get_output_details()[0]
        signature = input_detail["shape_signature"]
        self.sample_shape: tuple[int, ...] = tuple(int(d) for d in input_detail["shape"][1:])
        self.fixed_batch: int | None = None if signature[0] == -1 else int(signature[0])
        self.n_classes: int = int(output_detail["shape"][-1])
        self.input_dtype = np.dtype(input_detail["dtype"])
        self.output_dtype = np.dtype(output_detail["dtype"])

    @classmethod
    def from_file(cls, model_path: str, num_threads: int = 1) -> "LiteRTClassifier":
        with open(model_path, "rb") as file:
            return cls(file.read(), num_threads)

    def _interpreter(self) -> Interpreter:
        interpreter = getattr(self._local, "interpreter", None)
        if interpreter is None:
            interpreter = Interpreter(model_content=self._model_content, num_threads=self._num_threads)
            interpreter.allocate_tensors()
            self._local.interpreter = interpreter
            self._local.batch = int(interpreter.get_input_details()[0]["shape"][0])
        return interpreter

    def predict_proba(self, data) -> np.ndarray:
        """Probabilities (n, n_classes) for a batch in numpy, list or DataFrame form."""
        batch = to_batch(data, self.sample_shape)
        if self.fixed_batch is None:
            return self._invoke(batch)
        # A model converted with a fixed batch runs in chunks of that size, the last one padded.
        size = self.fixed_batch
        chunks = []
        for start in range(0, len(batch), size):
            chunk = batch[start : start + size]
            padded = np.concatenate([chunk, np.zeros((size - len(chunk), *self.sample_shape), np.float32)])
            chunks.append(self._invoke(padded)[: len(chunk)])
        return np.concatenate(chunks)

    def _invoke(self, batch: np.ndarray) -> np.ndarray:
        interpreter = self._interpreter()
        input_detail = interpreter.get_input_details()[0]
        if self.fixed_batch is None and self._local.batch != len(batch):
            interpreter.resize_tensor_input(input_detail["index"], [len(batch), *self.sample_shape])
            interpreter.allocate_tensors()
            self._local.batch = len(batch)
            input_detail = interpreter.get_input_details()[0]
        interpreter.set_tensor(input_detail["index"], _quantize(batch, input_detail))
        interpreter.invoke()
        output_detail = interpreter.get_output_details()[0]
        return _dequantize(interpreter.get_tensor(output_detail["index"]), output_detail)


def to_batch(data, sample_shape: tuple[int, ...]) -> np.ndarray:
    """A float32 batch shaped (n, *sample_shape) from numpy, nested lists or a DataFrame.

    Accepts samples in the model's shape, one sample without the batch axis,
    or flattened rows (n, prod(sample_shape)); a DataFrame may hold flattened
    pixels in columns or one column of nested arrays.
    """
    if isinstance(data, dict) and len(data) == 1:  # a single named input
        data = next(iter(data.values()))
    if isinstance(data, pd.DataFrame):
        if data.shape[1] == 1 and len(data) and np.ndim(data.iloc[0, 0]) > 0:
            data = np.stack([np.asarray(cell) for cell in data.iloc[:, 0]])
        else:
            data = data.to_numpy()
    try:
        array = np.asarray(data, dtype=np.float32)
    except (TypeError, ValueError) as error:
        raise InputError(f"input is not a numeric array ({error}); send numbers shaped {_expected(sample_shape)}")
    if array.shape == sample_shape:
        array = array[np.newaxis]
    elif array.ndim == 2 and array.shape[1] == prod(sample_shape):
        array = array.reshape(len(array), *sample_shape)
    if array.shape[1:] != sample_shape:
        raise InputError(f"input has shape {array.shape}; expected {_expected(sample_shape)}")
    if len(array) == 0:
        raise InputError(f"input batch is empty; send at least one sample shaped {sample_shape}")
    if not np.isfinite(array).all():
        raise InputError("input contains NaN or infinite values; send finite pixel values in [0, 1]")
    return array


def _expected(sample_shape: tuple[int, ...]) -> str:
    return f"(n, {', '.join(map(str, sample_shape))}) or flattened (n, {prod(sample_shape)})"


def _quantize(batch: np.ndarray, detail: dict) -> np.ndarray:
    dtype = np.dtype(detail["dtype"])
    if dtype == np.float32:
        return batch
    scale, zero_point = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(batch / scale + zero_point), info.min, info.max).astype(dtype)


def _dequantize(values: np.ndarray, detail: dict) -> np.ndarray:
    if values.dtype == np.float32:
        return values.copy()  # the interpreter reuses its output buffer
    scale, zero_point = detail["quantization"]
    return ((values.astype(np.float32) - zero_point) * scale).astype(np.float32)


class LiteRTPyfunc(mlflow.pyfunc.PythonModel):
    """The MLflow face of LiteRTClassifier: input a batch of images, output class probabilities."""

    def load_context(self, context):
        self.classifier = LiteRTClassifier.from_file(context.artifacts[TFLITE_ARTIFACT])

    def predict(self, context, model_input: np.ndarray, params=None) -> np.ndarray:
        return self.classifier.predict_proba(model_input)


mlflow.models.set_model(LiteRTPyfunc())
