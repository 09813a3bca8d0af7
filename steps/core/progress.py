"""How far a chain of child runs is: step k of n, the time so far, and an estimate of the time left.

The estimate adds, for each step still to run, the median time earlier finished runs of its entry point
took on the same data; a step with no such run makes it unknown, which the line says rather than guess.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field


def duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"


@dataclass
class Progress:
    entry_points: list[str]  # the children to run, in order
    earlier_seconds: dict[str, list[float]]  # entry point -> durations of its earlier finished runs on this data
    started: float = field(default_factory=time.monotonic)

    def line(self, index: int, label: str) -> str:
        """`[k/n] label: <time so far>, <time left>` before child `index` (0-based) starts."""
        elapsed = duration(time.monotonic() - self.started)
        left = [self.typical(entry_point) for entry_point in self.entry_points[index:]]
        if None in left:
            unknown = sorted({e for e, t in zip(self.entry_points[index:], left) if t is None})
            estimate = f"time left unknown (no earlier {', '.join(unknown)} run on this data)"
        else:
            estimate = f"about {duration(sum(left))} left"
        return f"[{index + 1}/{len(self.entry_points)}] {label}: {elapsed} so far, {estimate}"

    def typical(self, entry_point: str) -> float | None:
        durations = self.earlier_seconds.get(entry_point)
        return statistics.median(durations) if durations else None
