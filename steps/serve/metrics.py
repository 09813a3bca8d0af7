"""Prometheus metrics of one server, in a registry of its own (several servers can live in one test process).

Under `serve -P workers=N` each worker is a process of its own: the client
library's multiprocess mode (PROMETHEUS_MULTIPROC_DIR, set by `workers`) keeps
every value in a file there, and any worker's /metrics adds all of them up:
counters and histograms summed, gauges as each one's `multiprocess_mode` says.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Summary, generate_latest, multiprocess

METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"  # multiprocess mode's folder; prometheus_client reads it at import
STAGE_TIMINGS_ENV = "RTDEPLOY_STAGE_TIMINGS"  # set to 1: time every prediction's stages (a measurement mode)
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class ServerMetrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self.request_seconds = Histogram(
            "rtdeploy_request_seconds",
            "Request latency by endpoint and status",
            ["endpoint", "status"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.inference_seconds = Histogram(
            "rtdeploy_inference_seconds", "Model invocation time per batch", buckets=LATENCY_BUCKETS, registry=r
        )
        self.queue_seconds = Histogram(
            "rtdeploy_queue_seconds",
            "Time a request waited for the inference thread",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "rtdeploy_batch_size", "Samples per model invocation", buckets=BATCH_BUCKETS, registry=r
        )
        self.requests = Counter(
            "rtdeploy_requests", "Requests by endpoint and status", ["endpoint", "status"], registry=r
        )
        self.errors = Counter(
            "rtdeploy_errors", "Failed requests by endpoint and error kind", ["endpoint", "kind"], registry=r
        )
        self.model_version = Gauge(
            "rtdeploy_model_version", "Version being served", ["name"], registry=r, multiprocess_mode="liveall"
        )
        self.registry_reachable = Gauge(
            "rtdeploy_registry_reachable",
            "1 while the registry answers where the alias points, 0 while it cannot be reached (serving goes on)",
            registry=r,
            multiprocess_mode="livemin",
        )
        self.reloads = Counter("rtdeploy_reloads", "Model versions loaded after start", registry=r)
        self.failed_reloads = Counter("rtdeploy_failed_reloads", "Model versions that failed to load", registry=r)
        self.in_flight = Gauge(
            "rtdeploy_in_flight", "Prediction requests in progress", registry=r, multiprocess_mode="livesum"
        )
        self.fetch_peak_rss = Gauge(
            "rtdeploy_fetch_peak_rss_bytes",
            "Peak resident memory of the largest model-fetch child process so far (part of the server's footprint)",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.stages = StageTimes(r) if os.environ.get(STAGE_TIMINGS_ENV) else None  # None: nothing is timed
        self._per_status: dict[tuple[str, int], tuple] = {}  # labelled children, looked up once
        self._exposed = self.registry  # what /metrics shows: this server's, or all workers' added up
        if metrics_dir := os.environ.get(METRICS_DIR_ENV):
            self._exposed = CollectorRegistry()
            multiprocess.MultiProcessCollector(self._exposed, path=metrics_dir)

    def observe_request(self, endpoint: str, status: int, seconds: float, error_kind: str | None = None) -> None:
        children = self._per_status.get((endpoint, status))
        if children is None:
            labels = (endpoint, str(status))
            children = self._per_status[endpoint, status] = (
                self.request_seconds.labels(*labels),
                self.requests.labels(*labels),
            )
        children[0].observe(seconds)
        children[1].inc()
        if error_kind:
            self.errors.labels(endpoint, error_kind).inc()

    def exposition(self) -> bytes:
        return generate_latest(self._exposed)


class StageTimes:
    """Where a prediction's time goes, stage by stage, per endpoint: `rtdeploy_stage_seconds` (a summary: its
    _sum over its _count is a stage's mean) and `rtdeploy_stage_max_seconds` (the longest so far).

    Only when STAGE_TIMINGS_ENV is set (`bench/protocols.py` sets it): off, the request path pays one
    `is None` test per stage. Stages, in a call's order: receive (gRPC: the call accepted -> its message read
    and parsed, the handler starting), decode (the request's input -> the model's batch), queue (waiting for a
    batch to run in), invoke (the model), log (waiting for the prediction's group commit), encode (the answer
    made), send (gRPC: the handler's return -> the response and status sent); and handler (the handler alone,
    start to return). A client's latency less receive, handler and send is the transport and the framework
    before the call was accepted.
    """

    def __init__(self, registry: CollectorRegistry):
        labels = ["endpoint", "stage"]
        self.seconds = Summary("rtdeploy_stage_seconds", "Time per prediction stage", labels, registry=registry)
        self.max = Gauge(
            "rtdeploy_stage_max_seconds",
            "Longest time of a prediction stage so far",
            labels,
            registry=registry,
            multiprocess_mode="max",
        )
        self._children: dict[tuple[str, str], list] = {}  # [summary child, gauge child, longest so far]

    def note(self, endpoint: str, stage: str, seconds: float) -> None:
        children = self._children.get((endpoint, stage))
        if children is None:
            children = self._children[endpoint, stage] = [
                self.seconds.labels(endpoint, stage),
                self.max.labels(endpoint, stage),
                0.0,
            ]
        children[0].observe(seconds)
        if seconds > children[2]:
            children[2] = seconds
            children[1].set(seconds)
