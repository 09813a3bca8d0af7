"""Dynamic batching (InferenceEngine) with a stand-in model that records every batch it is given.

Concurrent requests merge into one invocation; a batch never mixes model
versions; a full batch runs at once, without waiting for the timer; each
caller gets its own rows back; a failing invocation fails every request that
waited for it. No timing is measured: the flush timer is set to an hour, so
a test that needed it would hang, not flake.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from steps.serve.batching import InferenceEngine
from steps.serve.metrics import ServerMetrics
from steps.serve.runtime import ModelRef

HOUR_MS = 3_600_000


class StandInModel:
    """The ServedModel interface; each output row is the sample's first pixel, so rows show whose they are."""

    sample_shape = (2, 2, 1)
    class_names = ["x"]

    def __init__(self, version: str, fail: bool = False):
        self.ref = ModelRef("stand-in", version, "champion", f"run-{version}")
        self.fail = fail
        self.batches: list[np.ndarray] = []

    def predict(self, batch: np.ndarray) -> np.ndarray:
        self.batches.append(batch.copy())
        if self.fail:
            raise RuntimeError("the interpreter failed")
        return batch.reshape(len(batch), -1)[:, :1]

    def warm(self, max_batch_size: int = 1) -> None:
        pass


def samples(*values: float) -> np.ndarray:
    return np.stack([np.full((2, 2, 1), value, np.float32) for value in values])


def engine(max_batch_size: int, max_batch_wait_ms: float = 0.0) -> InferenceEngine:
    return InferenceEngine(ServerMetrics(), max_batch_size, max_batch_wait_ms)


def test_requests_that_arrive_together_run_as_one_batch_and_each_gets_its_own_rows():
    async def scenario():
        model, batching = StandInModel("1"), engine(8)
        answers = await asyncio.gather(*(batching.predict(model, samples(i, i + 0.5)) for i in range(3)))
        return model, answers

    model, answers = asyncio.run(scenario())
    assert [len(batch) for batch in model.batches] == [6]
    for i, (rows, _) in enumerate(answers):
        assert rows[:, 0].tolist() == [i, i + 0.5]
    assert len({seconds for _, seconds in answers}) == 1  # each is told the time of the one invocation


def test_a_batch_never_mixes_versions():
    async def scenario():
        old, new, batching = StandInModel("1"), StandInModel("2"), engine(8)
        calls = [
            batching.predict(old, samples(1)),
            batching.predict(new, samples(2)),
            batching.predict(old, samples(3)),
        ]
        return old, new, await asyncio.wait_for(asyncio.gather(*calls), 30)

    old, new, answers = asyncio.run(scenario())
    assert [batch[:, 0, 0, 0].tolist() for batch in old.batches] == [[1], [3]]
    assert [batch[:, 0, 0, 0].tolist() for batch in new.batches] == [[2]]
    assert [rows[0, 0] for rows, _ in answers] == [1, 2, 3]


def test_a_full_batch_runs_at_once_without_waiting_for_the_timer():
    async def scenario():
        model, batching = StandInModel("1"), engine(4, HOUR_MS)
        pending = [asyncio.ensure_future(batching.predict(model, samples(i))) for i in range(5)]
        for _ in range(3):
            await asyncio.sleep(0)  # let every request reach the engine
        flushed = [len(batch) for batch in model.batches]
        done = [task.done() for task in pending]
        batching.close()
        for task in pending:
            task.cancel()
        return flushed, done

    flushed, done = asyncio.run(scenario())
    assert flushed == [4]  # the fifth waits for company (or the hour)
    assert done == [True, True, True, True, False]


def test_a_request_as_large_as_a_batch_runs_alone_at_once():
    async def scenario():
        model, batching = StandInModel("1"), engine(2, HOUR_MS)
        return model, await asyncio.wait_for(batching.predict(model, samples(1, 2, 3)), 30)

    model, (rows, _) = asyncio.run(scenario())
    assert [len(batch) for batch in model.batches] == [3] and rows[:, 0].tolist() == [1, 2, 3]


def test_a_failing_invocation_fails_every_request_that_waited_for_it():
    async def scenario():
        model, batching = StandInModel("1", fail=True), engine(8)
        calls = [batching.predict(model, samples(i)) for i in range(3)]
        return model, await asyncio.gather(*calls, return_exceptions=True)

    model, outcomes = asyncio.run(scenario())
    assert len(model.batches) == 1
    assert all(isinstance(outcome, RuntimeError) for outcome in outcomes)


def test_without_batching_every_request_is_its_own_invocation():
    async def scenario():
        model, single = StandInModel("1"), engine(1)
        await asyncio.gather(*(single.predict(model, samples(i)) for i in range(3)))
        return model

    assert [len(batch) for batch in asyncio.run(scenario()).batches] == [1, 1, 1]


@pytest.mark.parametrize("max_batch_size", [1, 4])
def test_invocations_are_counted_by_batch_size(max_batch_size):
    async def scenario():
        model, batching = StandInModel("1"), engine(max_batch_size)
        await asyncio.gather(*(batching.predict(model, samples(i)) for i in range(4)))
        return batching.metrics.batch_size.collect()[0]

    histogram = {sample.name: sample.value for sample in asyncio.run(scenario()).samples}
    assert histogram["rtdeploy_batch_size_count"] == 4 / max_batch_size
    assert histogram["rtdeploy_batch_size_sum"] == 4
