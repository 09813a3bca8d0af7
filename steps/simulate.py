"""`simulate` entry point: traffic for a running server, from held-out samples, optionally drifted, with feedback.

Sends `requests` test-split samples of `dataset` to `POST /invocations`, one
sample per request, `concurrency` at a time; after `drift` at `severity` (in
the drift kind's unit, see steps/datasets/corruptions.py; `default` is the strength
monitoring is tested to detect). For a `feedback_fraction`
share of the answered predictions it sends the true label to `POST /feedback`
under the answer's X-Request-Id, so `monitor` can measure live accuracy. It
shows progress and ends with a summary: sent, answered, errors by status, and
its own accuracy over the answers. The run is logged in the `monitoring`
experiment. Never imports tensorflow.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.parse
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import mlflow
import numpy as np

from steps import contract
from steps.core.stats import Accuracy, proportion
from steps.core.timing import percentiles_ms
from steps.datasets.corruptions import DEFAULT_SEVERITY, apply_drift
from steps.datasets.data import Dataset, load_dataset
from steps.parameters import UsageError, parse_config, run_cli
from steps.release.tracking import log_config, step_run
from steps.settings import SimulateConfig

TIMEOUT_SECONDS = 30
PROGRESS_EVERY = 0.1  # print a line each time this share of the requests is done


class ServerUnreachable(UsageError):
    """Nothing answers at the URL; the message says how to start a server."""


@dataclass
class SentTraffic:
    """What happened to the simulated requests."""

    sent: int = 0
    statuses: Counter = field(default_factory=Counter)
    correct: list[bool] = field(default_factory=list)  # per answered prediction
    latencies: list[float] = field(default_factory=list)  # seconds, client side
    feedback_sent: int = 0
    feedback_failed: int = 0
    seconds: float = 0.0

    @property
    def answered(self) -> int:
        return self.statuses[200]

    @property
    def accuracy(self) -> Accuracy | None:
        return proportion(np.array(self.correct)) if self.correct else None


def drifted_samples(data: Dataset, config: SimulateConfig) -> tuple[np.ndarray, np.ndarray]:
    """`requests` test samples in a seeded order (reused when there are fewer), after the chosen drift."""
    rng = np.random.default_rng(config.seed)
    order = rng.permutation(np.resize(np.arange(len(data.y_test)), config.requests))
    x, y = data.x_test[order], data.y_test[order]
    return apply_drift(x, y, config.drift, severity_of(config), rng)


def severity_of(config: SimulateConfig) -> float:
    return DEFAULT_SEVERITY[config.drift] if config.severity == "default" else float(config.severity)


class Client:
    """One keep-alive HTTP connection per thread to the server."""

    def __init__(self, url: str):
        parsed = urllib.parse.urlsplit(url)
        self.host, self.port = parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80)
        self.connection_class = http.client.HTTPSConnection if parsed.scheme == "https" else http.client.HTTPConnection
        self.base = parsed.path.rstrip("/")
        self.url = url
        self._local = threading.local()

    def post(self, path: str, payload: dict) -> tuple[int, dict, dict]:
        """(status, lower-cased headers, JSON answer); reconnects once if a kept-alive connection was closed."""
        body = json.dumps(payload).encode()
        try:
            return self._post(path, body)
        except ConnectionRefusedError as error:
            raise self.unreachable(error) from error
        except OSError:  # the server closed a kept-alive connection: one fresh try
            try:
                return self._post(path, body)
            except OSError as error:
                raise self.unreachable(error) from error

    def _post(self, path: str, body: bytes) -> tuple[int, dict, dict]:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = self.connection_class(self.host, self.port, timeout=TIMEOUT_SECONDS)
        try:
            connection.request("POST", self.base + path, body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            answer = response.read()
        except OSError:
            connection.close()
            self._local.connection = None
            raise
        headers = {key.lower(): value for key, value in response.getheaders()}
        return response.status, headers, json.loads(answer) if answer else {}

    def unreachable(self, error: OSError) -> ServerUnreachable:
        return ServerUnreachable(
            f"no server answers at {self.url} ({error}); start one with "
            "`mlflow run . -e serve --env-manager local` or pass -P url=..."
        )


def simulate(config: SimulateConfig, data: Dataset, progress=print) -> SentTraffic:
    """Send the traffic and the feedback; returns what happened."""
    x, y = drifted_samples(data, config)
    client, traffic, lock = Client(config.url), SentTraffic(), threading.Lock()
    rng = np.random.default_rng(config.seed + 1)
    send_feedback = rng.random(len(y)) < config.feedback_fraction
    milestones = {max(1, round(config.requests * share)) for share in np.arange(PROGRESS_EVERY, 1.0001, PROGRESS_EVERY)}

    def one(i: int) -> None:
        start = time.perf_counter()
        status, headers, answer = client.post("/invocations", {"instances": x[i : i + 1].tolist()})
        elapsed = time.perf_counter() - start
        right = None
        if status == 200:
            right = int(np.argmax(answer["predictions"][0])) == int(y[i])
        feedback_status = None
        if status == 200 and send_feedback[i]:
            label = data.class_names[int(y[i])]
            feedback_status, *_ = client.post("/feedback", {"request_id": headers["x-request-id"], "label": label})
        with lock:
            traffic.sent += 1
            traffic.statuses[status] += 1
            traffic.latencies.append(elapsed)
            if right is not None:
                traffic.correct.append(right)
            if feedback_status is not None:
                traffic.feedback_sent += 1
                traffic.feedback_failed += feedback_status != 200
            if traffic.sent in milestones:
                progress(f"simulate: {traffic.sent:,}/{config.requests:,} sent, {traffic.answered:,} answered")

    started = time.perf_counter()
    with ThreadPoolExecutor(config.concurrency) as pool:
        for future in [pool.submit(one, i) for i in range(len(y))]:
            future.result()  # the first failure (an unreachable server) ends the run with its message
    traffic.seconds = time.perf_counter() - started
    return traffic


def summary(config: SimulateConfig, traffic: SentTraffic) -> str:
    errors = {status: count for status, count in sorted(traffic.statuses.items()) if status != 200}
    p50, _, p99 = percentiles_ms(np.array(traffic.latencies))
    accuracy = traffic.accuracy
    return (
        f"simulate: {traffic.sent:,} requests to {config.url} (drift {config.drift}, severity {severity_of(config)}) "
        f"in {traffic.seconds:.1f} s ({traffic.sent / traffic.seconds:,.0f}/s, client p50 {p50:.2f} ms, "
        f"p99 {p99:.2f} ms): {traffic.answered:,} answered, errors {errors or 'none'}; "
        f"feedback sent for {traffic.feedback_sent:,} ({traffic.feedback_failed} refused); "
        f"accuracy of the answers {accuracy if accuracy else 'n/a'}"
    )


def main(argv: list[str] | None = None) -> None:
    config = parse_config(SimulateConfig, argv)
    data = load_dataset(config.dataset, image_size=config.image_size)
    with step_run(contract.SIMULATE, experiment=contract.MONITORING_EXPERIMENT):
        log_config(config)
        traffic = simulate(config, data)
        metrics = {contract.SENT: traffic.sent, contract.ANSWERED: traffic.answered}
        metrics[contract.FEEDBACK_SENT] = traffic.feedback_sent
        if traffic.accuracy is not None:
            metrics |= {contract.ACCURACY: traffic.accuracy.value}
        mlflow.log_metrics(metrics)
    print(summary(config, traffic))


if __name__ == "__main__":
    run_cli(contract.SIMULATE, main)
