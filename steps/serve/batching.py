"""Inference on the event loop's thread, with optional dynamic batching.

The models served here answer in tens of microseconds, less than handing a
request to another thread and back costs, so invocations run inline on the
event loop thread, which then owns every interpreter (one per thread, never
shared). With max_batch_size > 1, requests that arrive within
max_batch_wait_ms are merged into one invocation of up to max_batch_size
samples. A model that takes milliseconds per call would want an inference
thread instead: the place to change is `_run`.
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
    model: ServedModel
    batch: np.ndarray
    future: asyncio.Future
    queued_at: float


class InferenceEngine:
    def __init__(self, metrics: ServerMetrics, max_batch_size: int = 1, max_batch_wait_ms: float = 2.0):
        self.metrics = metrics
        self.max_batch_size = max(1, max_batch_size)
        self.max_batch_wait = max_batch_wait_ms / 1000.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._queue: asyncio.Queue[_Pending] | None = None
        self._collector: asyncio.Task | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Called on the event loop at start: inference and warm-up happen on this loop's thread."""
        self._loop, self._loop_thread = loop, threading.get_ident()

    def warm(self, model: ServedModel) -> None:
        """Build and exercise the model's interpreter on the loop thread (blocks the caller until done)."""
        if self._loop is None or threading.get_ident() == self._loop_thread:
            model.warm()
            return

        async def warm_on_loop():
            model.warm()

        asyncio.run_coroutine_threadsafe(warm_on_loop(), self._loop).result()

    def _run(self, model: ServedModel, batch: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        probabilities = model.predict(batch)
        self.metrics.inference_seconds.observe(time.perf_counter() - start)
        self.metrics.batch_size.observe(len(batch))
        return probabilities

    async def predict(self, model: ServedModel, batch: np.ndarray) -> np.ndarray:
        if self.max_batch_size == 1 or len(batch) >= self.max_batch_size:
            return self._run(model, batch)
        if self._collector is None:
            self._queue = asyncio.Queue()
            self._collector = asyncio.get_running_loop().create_task(self._collect())
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(model, batch, future, time.perf_counter()))
        return await future

    async def _collect(self) -> None:
        """Take the oldest request, add same-model requests until the batch is full or the wait is over, run."""
        carry: list[_Pending] = []
        while True:
            first = carry.pop(0) if carry else await self._queue.get()
            group, size = [first], len(first.batch)
            deadline = time.perf_counter() + self.max_batch_wait
            while size < self.max_batch_size:
                remaining = deadline - time.perf_counter()
                try:
                    if remaining <= 0:
                        item = self._queue.get_nowait()
                    else:
                        item = await asyncio.wait_for(self._queue.get(), remaining)
                except (asyncio.TimeoutError, asyncio.QueueEmpty):
                    break
                if item.model is not first.model or size + len(item.batch) > self.max_batch_size:
                    carry.append(item)  # another version (mid-swap) or too big: next round
                    break
                group.append(item)
                size += len(item.batch)
            now = time.perf_counter()
            for item in group:
                self.metrics.queue_seconds.observe(now - item.queued_at)
            try:
                probabilities = self._run(first.model, np.concatenate([item.batch for item in group]))
            except Exception as error:  # hand the failure to every waiting request
                for item in group:
                    if not item.future.done():
                        item.future.set_exception(error)
                continue
            start = 0
            for item in group:
                if not item.future.done():
                    item.future.set_result(probabilities[start : start + len(item.batch)])
                start += len(item.batch)

    def close(self) -> None:
        if self._collector is not None:
            self._collector.cancel()
