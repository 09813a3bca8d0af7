"""Follow a registry alias: when it moves, load and warm the new version beside the old, then swap.

Requests take the current model once, at their start, so in-flight requests
finish on the version they started with; the old version is released when the
last of them is done. A version that fails to load leaves the old one serving,
is counted and reported, and is not fetched again (versions do not change):
only a move of the alias to another version starts a new fetch.

Two things are injectable, for tests and other registries: `download`, which
resolves a URI and brings its files (by default a child process that imports
mlflow, `runtime.fetch_in_child`), and `lookup`, which makes the cheap poll of
where the alias points (by default `registry.alias_lookup`).
"""

from __future__ import annotations

import logging
import threading

from steps.serve.alias_lookup import LookupFailed, alias_lookup, parse_model_uri
from steps.serve.batching import InferenceEngine
from steps.serve.metrics import ServerMetrics
from steps.serve.runtime import Fetched, ModelLoadFailed, ServedModel, fetch, fetch_in_child

log = logging.getLogger("rtdeploy.serve")


class ModelHolder:
    """What the follower tells the data plane; the model is replaced by one reference assignment (atomic)."""

    def __init__(self):
        self.current: ServedModel | None = None
        self.last_error: str | None = None  # why the alias is not (or no longer) followed; None when it is
        self.fetch_peak_rss_bytes: int | None = None  # the largest fetch child's peak memory so far
        self.registry_reachable: bool | None = None  # did the last poll get an answer? None: not polled yet


class AliasFollower:
    def __init__(
        self,
        model_uri: str,
        holder: ModelHolder,
        engine: InferenceEngine,
        metrics: ServerMetrics,
        poll_seconds: float,
        *,
        download=fetch_in_child,
        lookup=alias_lookup,
        threads: int = 1,
    ):
        self.model_uri = model_uri
        self.threads = threads  # LiteRT threads of each loaded version
        self.name, self.alias, self.fixed_version = parse_model_uri(model_uri)
        self.holder = holder
        self.engine = engine
        self.metrics = metrics
        self.poll_seconds = poll_seconds
        self._download = download  # (model_uri, folder) -> the fetch answer
        self._lookup = lookup  # registry URI -> ((name, alias) -> version)
        self._version_of = None  # (name, alias) -> version, once the registry URI is known
        self._failed: str | None = None  # a version that failed to load: not fetched again
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll_loop, name="alias-follower", daemon=True)

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
            self._install(self._fetch())
        except ModelLoadFailed as error:
            self._failed = error.version
            self.metrics.failed_reloads.inc()
            self.holder.last_error = str(error)
            log.error("keeping version %s: %s", current.ref.version if current else "none", error)
        else:
            self._failed = None
            self.holder.last_error = None

    def _fetch(self) -> Fetched:
        try:
            fetched = fetch(self.model_uri, self._download, self.threads)
        except ModelLoadFailed as error:  # what was learnt before the failure still counts
            self._note_fetch_peak(error.peak_rss_bytes)
            if error.registry_uri:
                self._version_of = self._lookup(error.registry_uri)
            raise
        self._note_fetch_peak(fetched.peak_rss_bytes)
        self._note_registry(True)  # the child got its answer from it
        self._version_of = self._lookup(fetched.registry_uri)
        return fetched

    def _install(self, fetched: Fetched) -> None:
        model = fetched.model
        self.engine.warm(model)
        old = self.holder.current
        self.holder.current = model  # the swap
        self.metrics.model_version.labels(model.ref.name).set(float(model.ref.version))
        if old is not None:
            self.metrics.reloads.inc()
            log.warning("serving %s version %s (was %s)", model.ref.name, model.ref.version, old.ref.version)

    def _note_fetch_peak(self, peak_rss_bytes: int | None) -> None:
        if peak_rss_bytes is not None and peak_rss_bytes > (self.holder.fetch_peak_rss_bytes or 0):
            self.holder.fetch_peak_rss_bytes = peak_rss_bytes
            self.metrics.fetch_peak_rss.set(peak_rss_bytes)

    def _wanted_version(self) -> str | None:
        if self.alias is None:
            return self.fixed_version
        try:
            version = self._version_of(self.name, self.alias)
        except LookupFailed as error:  # registry unreachable or alias unset: keep serving, try next poll
            if str(error) != self.holder.last_error:  # once, not at every poll
                log.warning(str(error))
            self.holder.last_error = str(error)
            self._note_registry(not error.unreachable)
            return None
        self._note_registry(True)
        return version

    def _note_registry(self, reachable: bool) -> None:
        if reachable != self.holder.registry_reachable:
            if reachable and self.holder.registry_reachable is False:
                log.warning("the registry answers again; following models:/%s@%s", self.name, self.alias)
            self.holder.registry_reachable = reachable
            self.metrics.registry_reachable.set(1 if reachable else 0)

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.check_once()
            except Exception as error:  # a bug, not the registry's answer: said so, and the next poll tries again
                self.holder.last_error = f"internal error while following the alias ({type(error).__name__}: {error})"
                log.exception("%s; still serving what was served; please report this", self.holder.last_error)

    def start(self) -> None:
        if self.poll_seconds > 0:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
