"""Latency percentiles of a call: numpy only, so a profiling process measures the model, not its helpers."""

from __future__ import annotations

import time

import numpy as np


def percentiles_ms(seconds: np.ndarray) -> tuple[float, float, float]:
    """p50, p95, p99 in milliseconds of durations in seconds."""
    p50, p95, p99 = np.percentile(np.asarray(seconds) * 1000.0, [50, 95, 99])
    return float(p50), float(p95), float(p99)


def latency_percentiles_ms(call, warmup: int, runs: int) -> tuple[float, float, float]:
    """p50, p95, p99 in milliseconds of `call()`, after `warmup` untimed calls."""
    for _ in range(warmup):
        call()
    timings = np.empty(runs)
    for i in range(runs):
        start = time.perf_counter()
        call()
        timings[i] = time.perf_counter() - start
    return percentiles_ms(timings)
