"""Champion moves in a real (sqlite) registry: `previous` is always the champion before the last move.

A move stamps the version's promoted_at first, then settles the aliases to the
stamps (champion the latest, previous the one before). So moves by hand,
clocks that lag and moves that interleave (two processes that read the same
champion, and one's write landing late) all end with the aliases the stamps
say. The same with four real processes against PostgreSQL is in
tests/test_team.py.
"""

from __future__ import annotations

import itertools

import mlflow
import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import BAD_REQUEST, INTERNAL_ERROR, RESOURCE_DOES_NOT_EXIST

from steps import contract
from steps.release import registry
from tests.support.stores import store_in

modelS = (f"moves-{i}" for i in itertools.count())


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    with pytest.MonkeyPatch.context() as monkeypatch, store_in(tmp_path_factory.mktemp("store"), monkeypatch):
        yield


@pytest.fixture
def model(store, tmp_path) -> str:
    """A model of its own with four versions, none champion yet."""
    name = next(modelS)
    mlflow.MlflowClient().create_registered_model(name)
    for _ in range(4):
        mlflow.MlflowClient().create_model_version(name, str(tmp_path))
    return name


def aliases(name: str) -> tuple[str | None, str | None]:
    found = {alias: str(v) for alias, v in mlflow.MlflowClient().get_registered_model(name).aliases.items()}
    return found.get(contract.CHAMPION), found.get(contract.PREVIOUS)


def test_each_move_makes_the_old_champion_previous_and_rollback_swaps_them(model):
    assert registry.move_champion(model, 1) is None
    assert registry.move_champion(model, 2) == "1"
    assert registry.move_champion(model, 3) == "2"
    assert aliases(model) == ("3", "2")
    assert registry.rollback(model) == ("2", "3")
    assert registry.rollback(model) == ("3", "2")
    assert registry.move_champion(model, 3) == "3"  # already champion: nothing moves
    assert aliases(model) == ("3", "2")


def test_a_champion_set_by_hand_becomes_previous_at_the_next_move(model):
    registry.move_champion(model, 1)
    mlflow.MlflowClient().set_registered_model_alias(model, contract.CHAMPION, "3")  # in the MLflow UI, say
    assert registry.move_champion(model, 4) == "3"
    assert aliases(model) == ("4", "3")


def test_a_move_from_a_machine_whose_clock_lags_still_comes_last(model, monkeypatch):
    registry.move_champion(model, 1)
    monkeypatch.setattr(registry.time, "time", lambda: 1_000_000.0)  # 1970: far behind the first move's stamp
    assert registry.move_champion(model, 2) == "1"
    assert aliases(model) == ("2", "1")


def test_two_moves_that_read_the_same_champion_settle_in_stamp_order_whatever_lands_last(model):
    registry.move_champion(model, 1)
    champion = registry.version_by_alias(model, contract.CHAMPION)
    registry._stamp_move(model, "2", champion)  # process A and process B both saw v1 as champion
    registry._stamp_move(model, "3", champion)
    assert registry._settle_aliases(model) == ("3", "2")  # B settles first
    late = mlflow.MlflowClient()  # A's writes, computed when v1 was champion, land late
    late.set_registered_model_alias(model, contract.PREVIOUS, "1")
    late.set_registered_model_alias(model, contract.CHAMPION, "2")
    assert registry._settle_aliases(model) == ("3", "2")  # A reads back and puts them right
    assert aliases(model) == ("3", "2")


def client_whose_alias_writes(write):
    """The real client, but its alias writes go through write(real_client, *args)."""
    real = mlflow.MlflowClient()

    class Client:
        def __getattr__(self, name):
            return getattr(real, name)

        def set_registered_model_alias(self, *args):
            return write(real, *args)

    return Client


def test_a_write_that_collides_with_another_process_is_read_again_and_retried(model, monkeypatch):
    """A tracking server answers 500 when two processes insert the same alias row at once (its IntegrityError)."""
    collisions = []

    def collide_once(real, *args):
        if not collisions:
            collisions.append(args)
            raise MlflowException("duplicate key value violates unique constraint", error_code=INTERNAL_ERROR)
        return real.set_registered_model_alias(*args)

    monkeypatch.setattr(registry, "client", client_whose_alias_writes(collide_once))
    monkeypatch.setattr(registry.random, "uniform", lambda *_: 0.0)
    registry.move_champion(model, 1)
    assert registry.move_champion(model, 2) == "1"
    assert collisions and aliases(model) == ("2", "1")


def test_a_write_the_store_refuses_for_another_reason_is_not_retried(model, monkeypatch):
    def refuse(real, *args):
        raise MlflowException("no such version", error_code=RESOURCE_DOES_NOT_EXIST)

    monkeypatch.setattr(registry, "client", client_whose_alias_writes(refuse))
    with pytest.raises(MlflowException, match="no such version"):
        registry.move_champion(model, 1)


def test_a_unique_key_clash_answered_as_bad_request_is_a_collision_and_a_malformed_request_is_not():
    """A tracking server on PostgreSQL answers two simultaneous alias inserts as BAD_REQUEST (UniqueViolation)."""
    clash = MlflowException(
        '(psycopg.errors.UniqueViolation) duplicate key value violates unique constraint "registered_model_alias_pk"',
        error_code=BAD_REQUEST,
    )
    malformed = MlflowException("Invalid value for alias", error_code=BAD_REQUEST)
    assert registry.is_collision(clash) and registry.is_collision(MlflowException("x", error_code=INTERNAL_ERROR))
    assert not registry.is_collision(malformed)
