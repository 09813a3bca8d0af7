"""The alias lookup tells the store's answer (no such alias: reachable) from no answer (unreachable) and lets a bug
of its own through, never reported as an unreachable registry."""

from __future__ import annotations

import mlflow
import pytest

from steps.serve.alias_lookup import LookupFailed, _mlflow_lookup
from tests.support.server_process import free_port


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
