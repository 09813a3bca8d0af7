"""Follow a registry alias: when it moves, load and warm the new version beside the old, then swap.

Requests take the current model once, at their start, so in-flight requests
finish on the version they started with; the old version is released when the
last of them is done. A version that fails to load leaves the old one serving,
is counted and reported, and is not retried until the alias moves again.
"""

from __future__ import annotations

import logging
import threading

from steps.serve.batching import InferenceEngine
from steps.serve.metrics import ServerMetrics
from steps.serve.runtime import ModelLoadFailed, ModelRef, ServedModel, load, resolve

log = logging.getLogger("rtdeploy.serve")


class ModelHolder:
    """The model being served; replaced by one reference assignment, which is atomic in Python."""

    def __init__(self):
        self.current: ServedModel | None = None
        self.last_error: str | None = None


class AliasFollower:
    def __init__(
        self, model_uri: str, holder: ModelHolder, engine: InferenceEngine, metrics: ServerMetrics, poll_seconds: float
    ):
        self.model_uri = model_uri
        self.holder = holder
        self.engine = engine
        self.metrics = metrics
        self.poll_seconds = poll_seconds
        self._failed: ModelRef | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll_loop, name="alias-follower", daemon=True)

    def load_now(self) -> None:
        """Resolve and load synchronously (at start: the server is not ready before this succeeds)."""
        ref = resolve(self.model_uri)
        self._install(ref)

    def _install(self, ref: ModelRef) -> None:
        model = load(ref)
        self.engine.warm(model)
        old = self.holder.current
        self.holder.current = model  # the swap
        self.metrics.model_version.labels(ref.name).set(float(ref.version))
        if old is not None:
            self.metrics.reloads.inc()
            log.warning("serving %s version %s (was %s)", ref.name, ref.version, old.ref.version)

    def check_once(self) -> None:
        try:
            ref = resolve(self.model_uri)
        except (ModelLoadFailed, Exception) as error:  # registry unreachable: keep serving, try next poll
            self.holder.last_error = f"cannot resolve {self.model_uri}: {error}"
            log.warning(self.holder.last_error)
            return
        current = self.holder.current
        if (current is not None and current.ref.version == ref.version) or ref == self._failed:
            return
        try:
            self._install(ref)
            self._failed = None
            self.holder.last_error = None
        except ModelLoadFailed as error:
            self._failed = ref
            self.metrics.failed_reloads.inc()
            self.holder.last_error = str(error)
            log.error("keeping version %s: %s", current.ref.version if current else "none", error)

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            self.check_once()

    def start(self) -> None:
        if self.poll_seconds > 0:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
