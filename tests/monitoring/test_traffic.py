"""The prediction logs read back: paths, lists, globs and a multi-process server's worker logs; every sample with its
probabilities, input and later feedback; times as unix seconds or ISO."""

from __future__ import annotations

import numpy as np
import pytest

from steps import contract
from steps.monitoring.traffic import LogError, log_files, parse_time, read, time_range
from tests.support.logs import IMAGES, SOFTMAX, served_log


def test_times_are_unix_seconds_or_iso_in_utc_unless_they_say_otherwise():
    assert parse_time("1800000000", "since") == 1_800_000_000.0
    assert parse_time("2026-11-29T10:00", "since") == parse_time("2026-11-29T10:00+00:00", "since")
    assert parse_time("", "since") is None
    with pytest.raises(ValueError, match="since='yesterday' is not a time"):
        parse_time("yesterday", "since")


def test_log_paths_that_match_nothing_are_named(tmp_path):
    with pytest.raises(LogError, match="'missing.db' matches no file"):
        log_files("missing.db")
    with pytest.raises(LogError, match="matches no file"):
        log_files(str(tmp_path / "replica-*.db"))
    (tmp_path / "a.db").touch()
    (tmp_path / "b.db").touch()
    assert [p.name for p in log_files(f"{tmp_path}/*.db, {tmp_path}/a.db")] == ["a.db", "b.db"]


def test_the_log_a_multi_process_server_was_given_names_its_workers_logs(tmp_path):
    """serve -P workers=2 -P prediction_log=p.db writes p.worker1.db and p.worker2.db; `p.db` finds both."""
    assert contract.worker_log_path(str(tmp_path / "p.db"), 2) == str(tmp_path / "p.worker2.db")
    for index in (1, 2):
        (tmp_path / contract.worker_log_path("p.db", index)).touch()
    (tmp_path / "other.worker1.db").touch()
    assert [p.name for p in log_files(str(tmp_path / "p.db"))] == ["p.worker1.db", "p.worker2.db"]
    (tmp_path / "p.db").touch()  # a single-process server wrote there before: it counts too
    assert [p.name for p in log_files(str(tmp_path / "p.db"))] == ["p.db", "p.worker1.db", "p.worker2.db"]


def test_the_reader_gives_back_every_sample_with_its_probabilities_input_and_later_feedback(tmp_path):
    served_log(tmp_path / "a.db", "127.0.0.1:8080:1")
    served_log(tmp_path / "b.db", "127.0.0.1:8081:2")
    files = log_files(f"{tmp_path}/*.db")
    first, last = time_range(files)  # of predictions and refusals
    traffic = read(files)
    assert len(traffic.predictions) == 4 and len(traffic.samples) == 8
    assert sorted(set(traffic.samples["replica"])) == ["127.0.0.1:8080:1", "127.0.0.1:8081:2"]
    batch = traffic.samples["request_id"] == "batch"
    assert np.array_equal(traffic.probabilities[batch.to_numpy()], np.vstack([SOFTMAX, SOFTMAX]))
    inputs = [image for image, keep in zip(traffic.inputs, batch) if keep]
    assert all(np.abs(image - IMAGES[i % 3]).max() <= 0.5 / 255 + 1e-6 for i, image in enumerate(inputs))
    assert len(traffic.feedback) == 2, "one label per (request id, sample): both files logged the same feedback"
    assert list(traffic.refusals["kind"]) == ["BAD_REQUEST"] * 2 and len(traffic.heartbeats) == 2
    assert len(read(files, first, last + 1).heartbeats) == 1, "the first server's came before any request"
    assert len(read(files, last + 1, last + 2).feedback) == 2, "labels arrive later than their predictions"
