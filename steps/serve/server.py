"""One server's parts, wired together, and their start and stop (the app's lifespan)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging

from steps.serve.alias_lookup import alias_lookup
from steps.serve.batching import InferenceEngine
from steps.serve.dataplane import DataPlane
from steps.serve.metrics import ServerMetrics
from steps.serve.predlog import PredictionLog, replica_name
from steps.serve.reload import AliasFollower, ModelHolder
from steps.serve.runtime import fetch_in_child
from steps.settings import ServeConfig

log = logging.getLogger("rtdeploy.serve")
GRPC_GRACE_SECONDS = 2.0  # at stop, gRPC calls in progress get this long to finish
HEARTBEAT_SECONDS = 5.0  # how often the prediction log gets a heartbeat row (also one at start and one at stop)


class Server:
    """The data plane, the alias follower that fills it, and what both use; download and lookup as in `reload`,
    heartbeat_seconds shorter in tests; shared_ports: other processes (serve's workers) bind the same ports."""

    def __init__(
        self,
        config: ServeConfig,
        *,
        download=fetch_in_child,
        lookup=alias_lookup,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
        shared_ports: bool = False,
    ):
        self.config = config
        self.shared_ports = shared_ports
        self.heartbeat_seconds = heartbeat_seconds
        # Opened first: a file it cannot add to stops the start.
        replica = replica_name(config.host, config.port)
        self.predlog = PredictionLog(config.prediction_log, replica, config.log_inputs, config.log_sync)
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
            threads=config.threads,
        )

    @contextlib.asynccontextmanager
    async def lifespan(self, app):
        self.engine.bind(asyncio.get_running_loop())
        self.follower.check_once()  # not there yet or broken: serve 503 and keep polling
        grpc_server = await self._start_grpc()
        self.follower.start()
        # Everything imported and loaded so far (the app, numpy, LiteRT, the model) lives as long as the
        # server: keep it out of the cyclic GC, whose full passes over it stalled requests ~80 ms.
        gc.collect()
        gc.freeze()
        await self._beat()  # the first, before any request
        heartbeats = asyncio.create_task(self._heartbeats())
        try:
            yield
        finally:
            heartbeats.cancel()
            if grpc_server is not None:
                await grpc_server.stop(GRPC_GRACE_SECONDS)
            self.follower.stop()
            self.engine.close()
            await self._beat()  # the last, with what the server answered in all
            self.predlog.close()
            gc.unfreeze()  # the process may go on (tests run servers in theirs)

    async def _start_grpc(self):
        """The Open Inference Protocol's gRPC face on grpc_port, if asked (grpc imported only then)."""
        if not self.config.grpc_port:
            return None
        from steps.serve.oip import grpc_service

        config = self.config
        return await grpc_service.start(self.plane, self.metrics, config.host, config.grpc_port, self.shared_ports)

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            await self._beat()

    async def _beat(self) -> None:
        try:
            await self.plane.heartbeat()
        except Exception as error:  # disk full: predictions fail and say so; heartbeats go on trying
            log.error("heartbeat not logged: %s", error)
