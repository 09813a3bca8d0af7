"""Run a .tflite classifier with LiteRT: numpy and ai-edge-litert only.

The server imports this without mlflow or pandas (each costs tens of MB of
resident memory); `litert_model.py` wraps it as an MLflow pyfunc and ships a
copy of this file inside every deployable.
"""

from __future__ import annotations

import sys
import threading
from math import prod

import numpy as np
from ai_edge_litert.interpreter import Interpreter

MAX_INTERPRETER_BATCH = 64  # larger batches run in chunks: per-sample cost is flat beyond a few samples
THREADS = "threads"  # the pyfunc's model_config key: LiteRT threads per invocation (default 1)


class InputError(ValueError):
    """A batch that does not fit the model; the message says what was expected."""


class LiteRTClassifier:
    """Class probabilities from a .tflite classifier.

    LiteRT interpreters are not thread-safe, so each thread gets its own,
    built lazily from the same model bytes. A model with a dynamic batch axis
    keeps one interpreter per power-of-two batch size up to 64 (a batch is
    padded up to it, a larger one runs in chunks) instead of re-allocating
    tensors whenever the batch size changes.
    int8/uint8 inputs and outputs (`to_tflite(integer_io=True)`, and int8
    deployables made before 2026-12) are (de)quantized here, so callers always
    pass and get float32.
    """

    def __init__(self, model_content: bytes, num_threads: int = 1):
        self._model_content = model_content
        self.num_threads = num_threads
        self._local = threading.local()
        probe = _Runner(model_content, num_threads, batch_size=None)  # fails now, not on a request, if the file is bad
        signature = probe.input_detail["shape_signature"]
        self.sample_shape: tuple[int, ...] = tuple(int(d) for d in probe.input_detail["shape"][1:])
        self.fixed_batch: int | None = None if signature[0] == -1 else int(signature[0])
        self.n_classes: int = int(probe.output_detail["shape"][-1])
        self.input_dtype = probe.input_dtype
        self.output_dtype = probe.output_dtype
        self._local.runners = {probe.batch_size: probe}  # this thread's, ready to use

    @classmethod
    def from_file(cls, model_path: str, num_threads: int = 1) -> "LiteRTClassifier":
        with open(model_path, "rb") as file:
            return cls(file.read(), num_threads)

    def predict_proba(self, data) -> np.ndarray:
        """Probabilities (n, n_classes) for a batch in numpy, list or DataFrame form."""
        return self.predict_batch(to_batch(data, self.sample_shape))

    def predict_batch(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities for a batch already checked by `to_batch` (the server's hot path)."""
        size = self.fixed_batch or _bucket(len(batch))
        if size == len(batch):
            return self._invoke(batch)
        # Run in chunks of the interpreter's batch size, the last one padded with zeros.
        chunks = []
        for start in range(0, len(batch), size):
            chunk = batch[start : start + size]
            padded = np.concatenate([chunk, np.zeros((size - len(chunk), *self.sample_shape), np.float32)])
            chunks.append(self._invoke(padded)[: len(chunk)])
        return np.concatenate(chunks)

    def _invoke(self, batch: np.ndarray) -> np.ndarray:
        return self._runner(len(batch)).run(batch)

    def _runner(self, batch_size: int) -> "_Runner":
        runners = getattr(self._local, "runners", None)
        if runners is None:
            runners = self._local.runners = {}
        runner = runners.get(batch_size)
        if runner is None:
            runner = runners[batch_size] = _Runner(
                self._model_content, self.num_threads, None if self.fixed_batch else batch_size
            )
        return runner


class _Runner:
    """One interpreter allocated for one batch size, its tensor details and quantization read once."""

    def __init__(self, model_content: bytes, num_threads: int, batch_size: int | None):
        """batch_size None keeps the batch size the model was converted with."""
        interpreter = Interpreter(model_content=model_content, num_threads=num_threads)
        detail = interpreter.get_input_details()[0]
        if batch_size is not None and batch_size != detail["shape"][0]:
            interpreter.resize_tensor_input(detail["index"], [batch_size, *detail["shape"][1:]])
        interpreter.allocate_tensors()
        self.interpreter = interpreter
        self.input_detail = interpreter.get_input_details()[0]
        self.output_detail = interpreter.get_output_details()[0]
        self.batch_size = int(self.input_detail["shape"][0])
        self.input_dtype = np.dtype(self.input_detail["dtype"])
        self.output_dtype = np.dtype(self.output_detail["dtype"])
        self._input_index, self._output_index = self.input_detail["index"], self.output_detail["index"]
        self._quantize = self.input_dtype != np.float32
        if self._quantize:
            scale, zero_point = self.input_detail["quantization"]
            info = np.iinfo(self.input_dtype)
            self._input_inverse_scale, self._input_zero = np.float32(1 / scale), np.float32(zero_point)
            self._input_range = (np.float32(info.min), np.float32(info.max))
            self._scratch = np.empty(self.input_detail["shape"], np.float32)
        self._output_table = None
        if self.output_dtype in (np.int8, np.uint8):  # dequantize by table lookup: one numpy op, not four
            scale, zero_point = self.output_detail["quantization"]
            codes = np.arange(256, dtype=np.uint8).view(self.output_dtype).astype(np.float32)
            self._output_table = ((codes - zero_point) * scale).astype(np.float32)

    def run(self, batch: np.ndarray) -> np.ndarray:
        if self._quantize:
            scratch = self._scratch
            np.multiply(batch, self._input_inverse_scale, out=scratch)
            np.add(scratch, self._input_zero, out=scratch)
            np.rint(scratch, out=scratch)
            np.clip(scratch, *self._input_range, out=scratch)
            batch = scratch.astype(self.input_dtype)
        self.interpreter.set_tensor(self._input_index, batch)
        self.interpreter.invoke()
        values = self.interpreter.get_tensor(self._output_index)  # a copy: the interpreter reuses its buffer
        if self._output_table is not None:
            return self._output_table[values.view(np.uint8)]
        return values.astype(np.float32, copy=False)


def _bucket(n: int) -> int:
    """The power of two at or above n, at most MAX_INTERPRETER_BATCH: few interpreters, little padding."""
    return min(1 << (n - 1).bit_length(), MAX_INTERPRETER_BATCH)


def to_batch(data, sample_shape: tuple[int, ...]) -> np.ndarray:
    """A float32 batch shaped (n, *sample_shape) from numpy, nested lists or a DataFrame.

    Accepts samples in the model's shape, one sample without the batch axis,
    or flattened rows (n, prod(sample_shape)); a DataFrame may hold flattened
    pixels in columns or one column of nested arrays.
    """
    if isinstance(data, dict) and len(data) == 1:  # a single named input
        data = next(iter(data.values()))
    pandas = sys.modules.get("pandas")  # a DataFrame exists only if pandas is imported; never import it here
    if pandas is not None and isinstance(data, pandas.DataFrame):
        if data.shape[1] == 1 and len(data) and np.ndim(data.iloc[0, 0]) > 0:
            data = np.stack([np.asarray(cell) for cell in data.iloc[:, 0]])
        else:
            data = data.to_numpy()
    try:
        with np.errstate(over="ignore"):  # a value beyond float32 becomes inf, refused below with a clear message
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
