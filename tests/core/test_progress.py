"""`main`'s progress line: step k of n, the time so far, and the time left from earlier runs when known."""

from __future__ import annotations

from steps.core.progress import Progress, duration


def test_the_time_left_adds_the_median_earlier_time_of_each_step_still_to_run():
    progress = Progress(["train", "quantize", "prune", "quantize"], {"train": [60, 80, 70], "quantize": [10, 20]})
    progress.started -= 125  # two minutes in
    assert progress.line(1, "quantize (int8)") == (
        "[2/4] quantize (int8): 2 min 05 s so far, time left unknown (no earlier prune run on this data)"
    )
    progress.earlier_seconds["prune"] = [40]
    assert progress.line(1, "quantize (int8)").endswith("about 1 min 10 s left")  # 15 + 40 + 15
    assert progress.line(0, "train").endswith("about 2 min 20 s left")


def test_durations_read_as_a_person_says_them():
    assert duration(9.6) == "10 s" and duration(60) == "1 min 00 s" and duration(3725) == "62 min 05 s"
