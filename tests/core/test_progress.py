"""`main`'s progress line: step k of n, the time so far, and the time left from earlier runs when known, or
from the steps of the same kind this chain has finished."""

from __future__ import annotations

from steps.core.progress import Progress, duration


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_time_left_adds_the_median_earlier_time_of_each_step_still_to_run():
    clock = Clock()
    progress = Progress(
        ["train", "quantize", "prune", "quantize"], {"train": [60, 80, 70], "quantize": [10, 20]}, clock
    )
    assert progress.start(0, "train").endswith("time left unknown (no earlier prune run on this data)")
    clock.now += 125  # two minutes in
    assert progress.start(1, "quantize (int8)") == (
        "[2/4] quantize (int8): 2 min 05 s so far, time left unknown (no earlier prune run on this data)"
    )
    progress.earlier_seconds["prune"] = [40]
    assert progress.start(1, "quantize (int8)").endswith("about 1 min 10 s left")  # 15 + 40 + 15


def test_a_first_run_learns_each_kind_of_step_from_its_own_finished_ones():
    clock = Clock()
    progress = Progress(["train", "prune", "quantize", "prune", "quantize"], {}, clock)
    progress.start(0, "train")
    clock.now += 300
    progress.start(1, "prune")
    clock.now += 60
    assert progress.start(2, "quantize").endswith("time left unknown (no earlier quantize run on this data)")
    clock.now += 20
    assert progress.start(3, "prune").endswith("about 1 min 20 s left")  # its prune's 60 + its quantize's 20
    assert progress.this_chain_seconds == {"train": [300], "prune": [60], "quantize": [20]}


def test_durations_read_as_a_person_says_them():
    assert duration(9.6) == "10 s" and duration(60) == "1 min 00 s" and duration(3725) == "62 min 05 s"
