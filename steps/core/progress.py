"""How far a chain of child runs is: step k of n, the time so far, and an estimate of the time left.

The estimate adds, for each step still to run, the median time earlier finished runs of its entry point
took on the same data, or, for an entry point with none, the median of its steps finished earlier in this
chain (a first run of main knows its quantize time after its first quantize); a step with neither makes it
unknown, which the line says rather than guess.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Callable


def duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"


@dataclass
class Progress:
    entry_points: list[str]  # the children to run, in order
    earlier_seconds: dict[str, list[float]]  # entry point -> durations of its earlier finished runs on this data
    clock: Callable[[], float] = time.monotonic
    started: float = field(init=False)
    this_chain_seconds: dict[str, list[float]] = field(init=False, default_factory=dict)  # steps finished here
    step_started: float | None = field(init=False, default=None)

    def __post_init__(self):
        self.started = self.clock()

    def start(self, index: int, label: str) -> str:
        """Child `index` (0-based) starts, so the one before it has finished: its time is recorded. Returns
        `[k/n] label: <time so far>, <time left>`."""
        now = self.clock()
        if index > 0 and self.step_started is not None:
            self.this_chain_seconds.setdefault(self.entry_points[index - 1], []).append(now - self.step_started)
        self.step_started = now
        left = [self.typical(entry_point) for entry_point in self.entry_points[index:]]
        if None in left:
            unknown = sorted({e for e, t in zip(self.entry_points[index:], left) if t is None})
            estimate = f"time left unknown (no earlier {', '.join(unknown)} run on this data)"
        else:
            estimate = f"about {duration(sum(left))} left"
        return f"[{index + 1}/{len(self.entry_points)}] {label}: {duration(now - self.started)} so far, {estimate}"

    def typical(self, entry_point: str) -> float | None:
        durations = self.earlier_seconds.get(entry_point) or self.this_chain_seconds.get(entry_point)
        return statistics.median(durations) if durations else None
