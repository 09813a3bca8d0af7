"""Recipes: the compression steps that made a variant, as entry-point settings that make it again.

`main` runs them from its plan, `update` replays a champion's recorded steps on a new parent, and a `search`
trial is replayed as the prune, cluster and quantize steps it did in one process. Settings only: no
TensorFlow, no MLflow.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
from dataclasses import dataclass

from steps import contract
from steps.parameters import parse_config
from steps.settings import ClusterConfig, PruneConfig, QuantizeConfig

RECIPE_CONFIGS = {contract.PRUNE: PruneConfig, contract.CLUSTER: ClusterConfig, contract.QUANTIZE: QuantizeConfig}
TRIAL_QUANTIZE_MODE = {"ptq": "int8", "qat": "qat"}  # a search trial's quantization -> quantize's mode
FINE_TUNING = (
    "model_uri",
    "dataset",
    "image_size",
    "learning_rate",
    "batch_size",
    "seed",
    "robustness",
    "augment",
)  # every stage's


@dataclass(frozen=True)
class RecipeStep:
    """A compression step to run again: its entry point and its parameters, as `mlflow run` recorded them."""

    step: str
    params: dict[str, str]


def stage_epochs(epochs: int) -> dict[str, int]:
    """A trial's fine-tuning epochs per stage: pruning all of them, clustering and QAT half (at least one)."""
    return {contract.PRUNE: epochs, contract.CLUSTER: max(1, epochs // 2), contract.QUANTIZE: max(1, epochs // 2)}


def replay_steps(made: dict, params: dict[str, str]) -> list[RecipeStep]:
    """A finished trial as the entry-point steps that make it again (how `update` re-runs a searched champion):
    prune with its per-layer targets, cluster with its per-layer counts (if any), quantize as it did. made: the
    trial's own recipe entry; params: its run's parameters (the search's fine-tuning settings), as recorded."""
    shared = {key: params[key] for key in FINE_TUNING if key in params}  # model_uri and dataset: replaced
    epochs = stage_epochs(int(made["epochs"]))
    steps = [(contract.PRUNE, {"layer_sparsity": recorded(made["layer_sparsity"])})]
    if made["layer_clusters"]:
        steps.append((contract.CLUSTER, {"layer_clusters": recorded(made["layer_clusters"])}))
    steps.append((contract.QUANTIZE, {"mode": TRIAL_QUANTIZE_MODE[made["quantization"]]}))
    return [RecipeStep(step, shared | own | {"epochs": str(epochs[step])}) for step, own in steps]


def recorded(value) -> str:
    """A JSON setting as `mlflow run` records a parameter: shell-quoted."""
    return shlex.quote(json.dumps(value))


def unquoted(value: str) -> str:
    """A parameter as `mlflow run` recorded it (shell-quoted, an empty value as ''), as it was given."""
    return (shlex.split(value) or [""])[0]


def recipe_config(step: RecipeStep, parent_uri: str, data_uri: str):
    """A recipe step's settings as its run recorded them, on the new parent and data."""
    cls = RECIPE_CONFIGS[step.step]
    fields = {field.name for field in dataclasses.fields(cls)}
    given = {key: unquoted(value) for key, value in step.params.items() if key in fields}
    config = parse_config(cls, [f"--{key}={value}" for key, value in given.items()])
    return dataclasses.replace(config, model_uri=parent_uri, dataset=data_uri)
