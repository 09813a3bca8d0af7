"""Where a champion came from: no champion, or one without lineage, is refused naming the fix."""

from __future__ import annotations

import mlflow
import pytest

from steps import contract
from steps.adapt.origin import origin_of
from steps.release.registry import RegistryError

NAME = "pets"


def registered_without_lineage(tmp_path) -> None:
    client = mlflow.MlflowClient()
    client.create_registered_model(NAME)
    client.create_model_version(NAME, source=str(tmp_path), run_id=None)
    client.set_registered_model_alias(NAME, contract.CHAMPION, "1")


def registry_state() -> list[tuple]:
    client = mlflow.MlflowClient()
    versions = client.search_model_versions(f"name = '{NAME}'")
    return sorted((v.version, tuple(sorted(v.tags.items())), tuple(v.aliases)) for v in versions)


def test_no_champion_or_one_without_lineage_is_refused_naming_the_fix_and_nothing_changes(tracking, tmp_path):
    with pytest.raises(RegistryError, match="has no champion: run `mlflow run .`"):
        origin_of(NAME)
    registered_without_lineage(tmp_path)
    before = registry_state()
    with pytest.raises(RegistryError, match="v1 has no lineage .* not registered by rtdeploy"):
        origin_of(NAME)
    assert registry_state() == before
