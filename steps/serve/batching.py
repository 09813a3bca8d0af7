"""Inference on one dedicated thread, with optional dynamic batching and a bounded queue.

Each model's LiteRT interpreter lives on the inference thread only (never
shared across threads). With max_batch_size > 1, requests that arrive while
the thread is busy are merged into one invocation of up to max_batch_size
samples, waiting at most max_batch_wait_ms for company. A full queue answers
503 with Retry-After instead of growing without limit.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from steps.serve.errors import Unavailable
from steps.serve.metrics import ServerMetrics
from steps.serve.runtime import ServedModel


@dataclass
class _Pending:
    model: ServedModel
    batch: np.ndarray
    future: asyncio.Future
    queued_at: float


class InferenceEngine:
    def __init__(
        self, metrics: ServerMetrics, max_batch_size: int = 1, max_batch_wait_ms: float = 2.0, max_queue: int = 256
    ):
        self.metrics = metrics
        self.max_batch_size = max(1, max_batch_size)
        self.max_batch_wait = max_batch_wait_ms / 1000.0
        self.max_queue = max_queue
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self._waiting = 0
        self._queue: asyncio.Queue[_Pending] | None = None
        self._collector: asyncio.Task | None = None

    def warm(self, model: ServedModel) -> None:
        """Build and exercise the model's interpreter on the inference thread (blocking)."""
        self._executor.submit(model.warm).result()

    def _run(self, model: ServedModel, batch: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        probabilities = model.predict(batch)
        self.metrics.inference_seconds.observe(time.perf_counter() - start)
        self.metrics.batch_size.observe(len(batch))
        return probabilities

    async def predict(self, model: ServedModel, batch: np.ndarray) -> np.ndarray:
        if self._waiting >= self.max_queue:
            raise Unavailable(f"the server is at capacity ({self.max_queue} requests waiting); retry shortly")
        self._waiting += 1
        self.metrics.queue_depth.set(self._waiting)
        try:
            if self.max_batch_size == 1 or len(batch) >= self.max_batch_size:
                queued_at = time.perf_counter()
                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(self._executor, self._timed_run, model, batch, queued_at)
            return await self._batched(model, batch)
        finally:
            self._waiting -= 1
            self.metrics.queue_depth.set(self._waiting)

    def _timed_run(self, model: ServedModel, batch: np.ndarray, queued_at: float) -> np.ndarray:
        self.metrics.queue_seconds.observe(time.perf_counter() - queued_at)
        return self._run(model, batch)

    async def _batched(self, model: ServedModel, batch: np.ndarray) -> np.ndarray:
        if self._collector is None:
            self._queue = asyncio.Queue()
            self._collector = asyncio.get_running_loop().create_task(self._collect())
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(model, batch, future, time.perf_counter()))
        return await future

    async def _collect(self) -> None:
        """Take the oldest request, add same-model requests until the batch is full or the wait is over, run."""
        loop = asyncio.get_running_loop()
        carry: list[_Pending] = []
        while True:
            first = carry.pop(0) if carry else await self._queue.get()
            group, size = [first], len(first.batch)
            deadline = time.perf_counter() + self.max_batch_wait
            while size < self.max_batch_size:
                remaining = deadline - time.perf_counter()
                try:
                    item = (
                        self._queue.get_nowait()
                        if remaining <= 0
                        else await asyncio.wait_for(self._queue.get(), remaining)
                    )
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
            merged = np.concatenate([item.batch for item in group])
            try:
                probabilities = await loop.run_in_executor(self._executor, self._run, first.model, merged)
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
        self._executor.shutdown(wait=False, cancel_futures=True)
