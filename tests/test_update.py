"""update, in parts that need no training: what it refuses before changing anything, how it re-applies a
recipe as recorded, and when two updates are the same one."""

from __future__ import annotations

import mlflow
import pytest

from steps import contract
from steps.registry import RegistryError
from steps.settings import ClusterConfig, QuantizeConfig, UpdateConfig
from steps.update import origin_of, recipe_config, update_key

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


def test_a_recipe_step_runs_again_with_its_recorded_settings_on_the_new_parent_and_data():
    recorded = {"model_uri": "runs:/old/keras_model", "dataset": "digits", "image_size": "28", "epochs": "4",
                "learning_rate": "0.0001", "batch_size": "32", "seed": "42", "n_clusters": "16",
                "preserve_sparsity": "True", "unrelated": "x"}  # fmt: skip
    config = recipe_config({"step": contract.CLUSTER, "params": recorded}, "runs:/new/keras_model", "runs:/u/d.npz")
    assert config == ClusterConfig(model_uri="runs:/new/keras_model", dataset="runs:/u/d.npz", n_clusters=16)
    quoted = {"model_uri": "runs:/old/keras_model", "mode": "qat", "dataset": "''"}  # as mlflow run records them
    quantize = recipe_config({"step": contract.QUANTIZE, "params": quoted}, "runs:/new/keras_model", "d.npz")
    assert quantize == QuantizeConfig(model_uri="runs:/new/keras_model", dataset="d.npz", mode="qat")


def test_the_same_commit_champion_data_and_settings_make_the_same_update_key_whatever_the_time_range():
    config = UpdateConfig(new_data="feedback")
    key = update_key(config, "1", "digest", "commit")
    assert update_key(UpdateConfig(new_data="feedback", since="2026-11-29"), "1", "digest", "commit") == key
    assert update_key(UpdateConfig(new_data="feedback", epochs=5), "1", "digest", "commit") != key
    for changed in (("2", "digest", "commit"), ("1", "other", "commit"), ("1", "digest", "other")):
        assert update_key(config, *changed) != key, changed
