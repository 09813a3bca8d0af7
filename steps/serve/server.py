"""One server's parts, wired together, and their start and stop (the app's lifespan)."""

from __future__ import annotations

import asyncio
import contextlib
import gc

from steps.serve.batching import InferenceEngine
from steps.serve.dataplane import DataPlane
from steps.serve.metrics import ServerMetrics
from steps.serve.predlog import PredictionLog
from steps.serve.registry import alias_lookup
from steps.serve.reload import AliasFollower, ModelHolder
from steps.serve.runtime import fetch_in_child
from steps.settings import ServeConfig


class Server:
    """The data plane, the alias follower that fills it, and what both use; download and lookup as in `reload`."""

    def __init__(self, config: ServeConfig, *, download=fetch_in_child, lookup=alias_lookup):
        self.config = config
        self.predlog = PredictionLog(config.prediction_log)  # opened first: a bad file stops the start
        self.metrics = ServerMetrics()
        self.models = ModelHolder()
        self.engine = InferenceEngine(self.metrics, config.max_batch_size, config.max_batch_wait_ms)
        self.plane = DataPlane(config, self.models, self.engine, self.predlog, self.metrics)
        self.follower = AliasFollower(
            config.model_uri,
            self.models,
            self.engine,
            self.metrics,
            config.poll_seconds,
            download=download,
            lookup=lookup,
        )

    @contextlib.asynccontextmanager
    async def lifespan(self, app):
        self.engine.bind(asyncio.get_running_loop())
        self.follower.check_once()  # not there yet or broken: serve 503 and keep polling
        self.follower.start()
        # Everything imported and loaded so far (the app, numpy, LiteRT, the model) lives as long as the
        # server: keep it out of the cyclic GC, whose full passes over it stalled requests ~80 ms.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            self.follower.stop()
            self.engine.close()
            self.predlog.close()
            gc.unfreeze()  # the process may go on (tests run servers in theirs)
