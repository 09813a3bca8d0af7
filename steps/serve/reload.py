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
from steps.serve.registry import LookupFailed, alias_lookup, parse_model_uri
from steps.serve.runtime import ModelLoadFailed, ServedModel, fetch

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
        self.name, self.alias, self.fixed_version = parse_model_uri(model_uri)
        self.holder = holder
        self.engine = engine
        self.metrics = metrics
        self.poll_seconds = poll_seconds
        self._version_of = None  # (name, alias) -> version, once the registry URI is known
        self._failed: str | None = None  # a version that failed to load: not retried until the alias moves
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll_loop, name="alias-follower", daemon=True)

    def _fetch_and_install(self) -> None:
        try:
            model, registry_uri = fetch(self.model_uri)
        except ModelLoadFailed as error:
            if error.registry_uri:
                self._version_of = alias_lookup(error.registry_uri)
            raise
        self._version_of = alias_lookup(registry_uri)
        self._install(model)

    def _install(self, model: ServedModel) -> None:
        self.engine.warm(model)
        old = self.holder.current
        self.holder.current = model  # the swap
        self.metrics.model_version.labels(model.ref.name).set(float(model.ref.version))
        if old is not None:
            self.metrics.reloads.inc()
            log.warning("serving %s version %s (was %s)", model.ref.name, model.ref.version, old.ref.version)

    def check_once(self) -> None:
        """Ask where the alias points (cheap); fetch and swap only when it moved to a version not yet tried."""
        current = self.holder.current
        if self._version_of is not None:  # the registry is known: poll it without mlflow
            wanted = self._wanted_version()
            if wanted is None or wanted == self._failed:  # last_error says why
                return
            if current is not None and wanted == current.ref.version:
                self.holder.last_error = None  # the registry answers and names what is served
                return
        try:
            self._fetch_and_install()
        except ModelLoadFailed as error:
            self._failed = error.version
            self.metrics.failed_reloads.inc()
            self.holder.last_error = str(error)
            log.error("keeping version %s: %s", current.ref.version if current else "none", error)
        else:
            self._failed = None
            self.holder.last_error = None

    def _wanted_version(self) -> str | None:
        if self.alias is None:
            return self.fixed_version
        try:
            return self._version_of(self.name, self.alias)
        except LookupFailed as error:  # registry unreachable or alias unset: keep serving, try next poll
            if str(error) != self.holder.last_error:  # once, not at every poll
                log.warning(str(error))
            self.holder.last_error = str(error)
            return None

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            self.check_once()

    def start(self) -> None:
        if self.poll_seconds > 0:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
