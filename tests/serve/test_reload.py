"""Following the alias (AliasFollower) against a stand-in registry, with the real LiteRT loading.

When the alias moves to a good version, that version is loaded and swapped in;
a version whose file is corrupt leaves the old one serving, is reported in
last_error and is not fetched again at every poll; last_error clears when the
alias moves to a good version or the registry names what is served again; a
registry that cannot be reached is reported (registry_reachable, its gauge) while
the model keeps serving, and following resumes when it answers; the fetch
child's peak memory is kept (its largest) for /version and /metrics.
"""

from __future__ import annotations

import numpy as np
import pytest

from steps.serve.batching import InferenceEngine
from steps.serve.metrics import ServerMetrics
from steps.serve.reload import AliasFollower, ModelHolder
from tests.support.server_process import wait_for
from tests.support.serving import GRAY_CLASSES, GRAY_SHAPE, MODEL, StandInRegistry, tiny_tflite


@pytest.fixture
def registry(tmp_path):
    """v1 and v2 are good models, v3 is a corrupt file; champion -> v1."""
    registry = StandInRegistry(tmp_path)
    for version in ("1", "2"):
        registry.add(version, tiny_tflite(GRAY_SHAPE, len(GRAY_CLASSES)), GRAY_CLASSES)
    registry.add("3", b"not a flatbuffer" * 100, GRAY_CLASSES)
    registry.aliases["champion"] = "1"
    return registry


def follower_of(registry: StandInRegistry, threads: int = 1) -> AliasFollower:
    metrics = ServerMetrics()
    return AliasFollower(
        f"models:/{MODEL}@champion",
        ModelHolder(),
        InferenceEngine(metrics),
        metrics,
        poll_seconds=0,
        download=registry.download,
        lookup=registry.lookup,
        threads=threads,
    )


def served(follower: AliasFollower) -> str | None:
    model = follower.holder.current
    return model.ref.version if model else None


def counted(follower: AliasFollower, name: str) -> float:
    return follower.metrics.registry.get_sample_value(name) or 0.0


def test_the_first_check_serves_the_aliased_version(registry):
    follower = follower_of(registry)
    follower.check_once()
    assert served(follower) == "1" and follower.holder.last_error is None
    model = follower.holder.current
    assert model.ref.alias == "champion" and model.ref.run_id == "run-1" and model.class_names == GRAY_CLASSES
    assert follower.metrics.registry.get_sample_value("rtdeploy_model_version", {"name": MODEL}) == 1.0


def test_every_version_loaded_runs_on_the_threads_asked_for_and_answers_as_on_one(registry):
    one, two = follower_of(registry), follower_of(registry, threads=2)
    for follower in (one, two):
        follower.check_once()
    assert (one.holder.current.classifier.num_threads, two.holder.current.classifier.num_threads) == (1, 2)
    batch = np.random.default_rng(0).random((4, *GRAY_SHAPE), np.float32)
    np.testing.assert_allclose(two.holder.current.predict(batch), one.holder.current.predict(batch), rtol=1e-6)
    registry.aliases["champion"] = "2"
    two.check_once()
    assert two.holder.current.ref.version == "2" and two.holder.current.classifier.num_threads == 2


def test_a_poll_that_finds_the_alias_unmoved_fetches_nothing(registry):
    follower = follower_of(registry)
    for _ in range(5):
        follower.check_once()
    assert registry.downloads == ["1"]


def test_when_the_alias_moves_the_new_version_is_swapped_in(registry):
    follower = follower_of(registry)
    follower.check_once()
    registry.aliases["champion"] = "2"
    follower.check_once()
    assert served(follower) == "2" and registry.downloads == ["1", "2"]
    assert counted(follower, "rtdeploy_reloads_total") == 1


def test_a_corrupt_version_leaves_the_old_one_serving_and_is_not_fetched_at_every_poll(registry):
    follower = follower_of(registry)
    follower.check_once()
    registry.aliases["champion"] = "3"
    for _ in range(5):
        follower.check_once()
    assert served(follower) == "1"
    assert registry.downloads.count("3") == 1
    assert "models:/tiny/3 cannot be loaded" in follower.holder.last_error
    assert counted(follower, "rtdeploy_failed_reloads_total") == 1


def test_last_error_clears_when_the_alias_moves_on_to_a_good_version(registry):
    follower = follower_of(registry)
    follower.check_once()
    registry.aliases["champion"] = "3"
    follower.check_once()
    registry.aliases["champion"] = "2"
    follower.check_once()
    assert served(follower) == "2" and follower.holder.last_error is None


def test_last_error_clears_when_the_registry_names_what_is_served_again(registry):
    follower = follower_of(registry)
    follower.check_once()
    registry.aliases["champion"] = "3"
    follower.check_once()
    registry.aliases["champion"] = "1"  # a rollback to what never stopped serving
    follower.check_once()
    assert served(follower) == "1" and follower.holder.last_error is None
    assert registry.downloads == ["1", "3"]


def test_an_alias_that_disappears_is_reported_and_the_model_keeps_serving(registry):
    follower = follower_of(registry)
    follower.check_once()
    del registry.aliases["champion"]
    follower.check_once()
    assert served(follower) == "1" and "points at no version" in follower.holder.last_error
    registry.aliases["champion"] = "1"
    follower.check_once()
    assert follower.holder.last_error is None


def test_an_unreachable_registry_is_reported_and_following_resumes_when_it_answers(registry):
    follower = follower_of(registry)
    follower.check_once()
    assert follower.holder.registry_reachable is True
    assert counted(follower, "rtdeploy_registry_reachable") == 1
    registry.reachable = False
    registry.aliases["champion"] = "2"  # moved during the outage
    follower.check_once()
    assert served(follower) == "1" and follower.holder.registry_reachable is False
    assert "cannot ask" in follower.holder.last_error
    assert counted(follower, "rtdeploy_registry_reachable") == 0
    registry.reachable = True
    follower.check_once()
    assert served(follower) == "2" and follower.holder.registry_reachable is True
    assert follower.holder.last_error is None and counted(follower, "rtdeploy_registry_reachable") == 1


def test_an_alias_that_is_unset_is_an_answer_not_a_lost_registry(registry):
    follower = follower_of(registry)
    follower.check_once()
    del registry.aliases["champion"]
    follower.check_once()
    assert follower.holder.registry_reachable is True


def test_a_server_whose_first_version_is_corrupt_serves_nothing_until_the_alias_moves(registry):
    registry.aliases["champion"] = "3"
    follower = follower_of(registry)
    follower.check_once()
    follower.check_once()
    assert served(follower) is None and "cannot be loaded" in follower.holder.last_error
    assert registry.downloads == ["3"]
    registry.aliases["champion"] = "2"
    follower.check_once()
    assert served(follower) == "2" and follower.holder.last_error is None


def test_the_largest_peak_memory_of_a_fetch_child_is_kept(registry):
    follower = follower_of(registry)
    registry.peak_rss_bytes = 200_000_000
    follower.check_once()
    registry.peak_rss_bytes = 150_000_000  # a smaller fetch later does not lower it
    registry.aliases["champion"] = "2"
    follower.check_once()
    assert follower.holder.fetch_peak_rss_bytes == 200_000_000
    assert counted(follower, "rtdeploy_fetch_peak_rss_bytes") == 200_000_000
    registry.peak_rss_bytes = 300_000_000  # a failed fetch costs memory too
    registry.aliases["champion"] = "3"
    follower.check_once()
    assert follower.holder.fetch_peak_rss_bytes == 300_000_000


def test_the_follower_reports_its_own_bug_and_keeps_serving_and_following(tmp_path):
    registry = StandInRegistry(tmp_path)
    for version in ("1", "2"):
        registry.add(version, tiny_tflite(GRAY_SHAPE, len(GRAY_CLASSES)), GRAY_CLASSES)
    registry.aliases["champion"] = "1"
    broken = {"now": False}

    def lookup(registry_uri: str):
        version_of = registry.lookup(registry_uri)

        def maybe_broken(name: str, alias: str) -> str:
            if broken["now"]:
                raise TypeError("a bug in the lookup")
            return version_of(name, alias)

        return maybe_broken

    metrics = ServerMetrics()
    follower = AliasFollower(
        f"models:/{MODEL}@champion",
        ModelHolder(),
        InferenceEngine(metrics),
        metrics,
        poll_seconds=0.05,
        download=registry.download,
        lookup=lookup,
    )
    follower.check_once()
    broken["now"] = True
    follower.start()
    try:
        assert wait_for(lambda: (follower.holder.last_error or "").startswith("internal error"), timeout=10)
        assert "a bug in the lookup" in follower.holder.last_error
        assert follower.holder.registry_reachable is True  # not blamed on the registry
        assert follower.holder.current.ref.version == "1"  # still serving
        broken["now"] = False
        registry.aliases["champion"] = "2"
        assert wait_for(lambda: follower.holder.current.ref.version == "2", timeout=10)  # the loop survived
        assert follower.holder.last_error is None
    finally:
        follower.stop()
