"""The server's alias follower tells three things apart: the store's answer (no such alias: reachable), no answer
(unreachable), and a bug of its own (reported as an internal error, never as "registry unreachable"), and keeps
serving through all three."""

from __future__ import annotations

import mlflow
import pytest

from steps.serve.alias_lookup import LookupFailed, _mlflow_lookup
from steps.serve.batching import InferenceEngine
from steps.serve.metrics import ServerMetrics
from steps.serve.reload import AliasFollower, ModelHolder
from tests.support.server_process import free_port, wait_for
from tests.support.serving import GRAY_CLASSES, GRAY_SHAPE, MODEL, StandInRegistry, tiny_tflite


def test_a_store_that_answers_is_reachable_even_when_the_alias_is_unset(tracking):
    mlflow.MlflowClient().create_registered_model("follower-model")
    lookup = _mlflow_lookup(tracking)
    with pytest.raises(LookupFailed) as answered:
        lookup("follower-model", "champion")
    assert answered.value.unreachable is False


def test_a_store_that_does_not_answer_is_unreachable(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # no answer is known at once, not after minutes
    lookup = _mlflow_lookup(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(LookupFailed) as silent:
        lookup("follower-model", "champion")
    assert silent.value.unreachable is True


def test_a_bug_in_the_lookup_is_not_reported_as_an_unreachable_registry(tracking, monkeypatch):
    monkeypatch.setattr(mlflow.MlflowClient, "get_model_version_by_alias", lambda *_: None)  # .version of None
    with pytest.raises(AttributeError):
        _mlflow_lookup(tracking)("follower-model", "champion")


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
