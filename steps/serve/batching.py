"""Inference on the event loop's thread, with optional dynamic batching.

The models served here answer in tens of microseconds, less than handing a
request to another thread and back costs, so invocations run inline on the
event loop thread, which then owns every interpreter (one per thread, never
shared). A model that takes milliseconds per call would want an inference
thread instead: the place to change is `_run`.

With max_batch_size > 1, requests gather like rows in a group commit: the
first one schedules a flush, max_batch_wait_ms later (0: at the end of the
current loop iteration, so requests that arrived together run together and
none waits for a timer); a full batch flushes at once. One invocation then
answers them all.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass

import numpy as np

from steps.serve.metrics import ServerMetrics
from steps.serve.runtime import ServedModel


@dataclass
class _Pending:
    batch: np.ndarray
    future: asyncio.Future
    queued_at: float


class InferenceEngine:
    def __init__(self, metrics: ServerMetrics, max_batch_size: int = 1, max_batch_wait_ms: float = 0.0):
        self.metrics = metrics
        self.max_batch_size = max(1, max_batch_size)
        self.max_batch_wait = max_batch_wait_ms / 1000.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._model: ServedModel | None = None  # of the requests pending: a batch never mixes versions
        self._pending: list[_Pending] = []
        self._pending_samples = 0
        self._flush_handle: asyncio.Handle | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Called on the event loop at start: inference and warm-up happen on this loop's thread."""
        self._loop, self._loop_thread = loop, threading.get_ident()

    def warm(self, model: ServedModel) -> None:
        """Build and exercise the model's interpreters on the loop thread (blocks the caller until done)."""
        if self._loop is None or threading.get_ident() == self._loop_thread:
            model.warm(self.max_batch_size)
            return

        async def warm_on_loop():
            model.warm(self.max_batch_size)

        asyncio.run_coroutine_threadsafe(warm_on_loop(), self._loop).result()

    def _run(self, model: ServedModel, batch: np.ndarray) -> tuple[np.ndarray, float]:
        start = time.perf_counter()
        probabilities = model.predict(batch)
        seconds = time.perf_counter() - start
        self.metrics.inference_seconds.observe(seconds)
        self.metrics.batch_size.observe(len(batch))
        return probabilities, seconds

    async def predict(self, model: ServedModel, batch: np.ndarray) -> tuple[np.ndarray, float]:
        """The batch's probabilities and the seconds its invocation took."""
        if self.max_batch_size == 1 or len(batch) >= self.max_batch_size:
            return self._run(model, batch)
        if self._pending and (model is not self._model or self._pending_samples + len(batch) > self.max_batch_size):
            self._flush()  # another version (mid-swap) or no room: run what is pending first
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._model = model
        self._pending.append(_Pending(batch, future, time.perf_counter()))
        self._pending_samples += len(batch)
        if self._pending_samples >= self.max_batch_size:
            self._flush()
        elif len(self._pending) == 1 and self.max_batch_wait:
            self._flush_handle = loop.call_later(self.max_batch_wait, self._flush)
        elif len(self._pending) == 1:
            self._flush_handle = loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        group, model = self._pending, self._model
        self._pending, self._pending_samples, self._model = [], 0, None
        if not group:
            return
        now = time.perf_counter()
        for item in group:
            self.metrics.queue_seconds.observe(now - item.queued_at)
        try:
            batch = group[0].batch if len(group) == 1 else np.concatenate([item.batch for item in group])
            probabilities, seconds = self._run(model, batch)
        except Exception as error:  # hand the failure to every waiting request
            for item in group:
                if not item.future.done():
                    item.future.set_exception(error)
            return
        start = 0
        for item in group:
            if not item.future.done():  # a client that went away cancelled its future
                item.future.set_result((probabilities[start : start + len(item.batch)], seconds))
            start += len(item.batch)

    def close(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
