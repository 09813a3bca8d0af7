"""Recipes made again: a recorded step with its settings on a new parent and data; a search trial as prune,
cluster and quantize with its per-layer targets."""

from __future__ import annotations

from steps import contract
from steps.adapt.origin import replayed
from steps.compress.recipes import RecipeStep, recipe_config
from steps.release.lineage import LineageEntry
from steps.settings import ClusterConfig, PruneConfig, QuantizeConfig


def test_a_recipe_step_runs_again_with_its_recorded_settings_on_the_new_parent_and_data():
    recorded = {
        "model_uri": "runs:/old/keras_model",
        "dataset": "digits",
        "image_size": "28",
        "epochs": "4",
        "learning_rate": "0.0001",
        "batch_size": "32",
        "seed": "42",
        "n_clusters": "16",
        "preserve_sparsity": "True",
        "unrelated": "x",
    }
    config = recipe_config(RecipeStep(contract.CLUSTER, recorded), "runs:/new/keras_model", "runs:/u/d.npz")
    assert config == ClusterConfig(model_uri="runs:/new/keras_model", dataset="runs:/u/d.npz", n_clusters=16)
    quoted = {"model_uri": "runs:/old/keras_model", "mode": "qat", "dataset": "''"}  # as mlflow run records them
    quantize = recipe_config(RecipeStep(contract.QUANTIZE, quoted), "runs:/new/keras_model", "d.npz")
    assert quantize == QuantizeConfig(model_uri="runs:/new/keras_model", dataset="d.npz", mode="qat")


def trial_entry(made: dict, params: dict[str, str]) -> LineageEntry:
    return LineageEntry("trial-run", contract.SEARCH_TRIAL, "t41", "runs:/old/keras_model", params, made)


def test_a_search_trial_is_replayed_as_prune_cluster_quantize_with_its_per_layer_targets():
    """update re-runs a searched champion through the entry points, with what the trial recorded."""
    made = {
        "step": contract.SEARCH_TRIAL,
        "study": "s",
        "trial": 41,
        "layer_sparsity": {"conv0b": 0.93, "dense": 0.9},
        "layer_clusters": {"conv0b": 3, "dense": 8},
        "quantization": "ptq",
        "epochs": 6,
    }
    params = {
        "model_uri": "runs:/old/keras_model",
        "dataset": "digits",
        "learning_rate": "0.0001",
        "batch_size": "32",
        "seed": "42",
        "n_trials": "40",
        "epochs": "6",
    }
    steps = replayed(trial_entry(made, params))
    assert [step.step for step in steps] == [contract.PRUNE, contract.CLUSTER, contract.QUANTIZE]
    parent, data = "runs:/new/keras_model", "runs:/u/d.npz"
    prune, cluster, quantize = (recipe_config(step, parent, data) for step in steps)
    assert prune.per_layer == {"conv0b": 0.93, "dense": 0.9} and prune.epochs == 6
    assert prune == PruneConfig(
        model_uri=parent, dataset=data, epochs=6, learning_rate=0.0001, layer_sparsity=prune.layer_sparsity
    )
    assert cluster.per_layer == {"conv0b": 3, "dense": 8} and cluster.epochs == 3
    assert quantize == QuantizeConfig(model_uri=parent, dataset=data, epochs=3, mode="int8")
    unclustered = replayed(trial_entry(made | {"layer_clusters": {}, "quantization": "qat"}, params))
    assert [(step.step, step.params.get("mode")) for step in unclustered] == [
        (contract.PRUNE, None),
        (contract.QUANTIZE, "qat"),
    ]
    other = LineageEntry("prune-run", contract.PRUNE, "pruned80", parent, {"target_sparsity": "0.8"}, {})
    assert replayed(other) == [RecipeStep(contract.PRUNE, {"target_sparsity": "0.8"})]
