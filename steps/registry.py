"""Registry reads and writes: versions with lineage tags, the gate's verdict, and alias moves.

Aliases (champion, challenger, previous) decide what is served; stages are
deprecated in MLflow and not used. Every alias move goes through `move_champion`
or `rollback`, so `previous` always holds the champion before the last move.
"""

from __future__ import annotations

import json

import mlflow
import numpy as np
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from steps import contract
from steps.data import load_dataset
from steps.evaluate import predict_classes
from steps.gate import Thresholds, Verdict, decide
from steps.variants import source_run_id


class RegistryError(ValueError):
    """A registry request that cannot be done as asked; the message says why and what to do."""


def client() -> mlflow.MlflowClient:
    return mlflow.MlflowClient()


def version_by_alias(name: str, alias: str) -> ModelVersion | None:
    try:
        return client().get_model_version_by_alias(name, alias)
    except MlflowException:  # no such alias (or no such model yet)
        return None


def get_version(name: str, version: str | int) -> ModelVersion:
    try:
        return client().get_model_version(name, str(version))
    except MlflowException as error:
        raise RegistryError(f"model {name!r} has no version {version}; list them in the MLflow UI ({error})") from error


def version_from_run(name: str, source_run_id: str) -> ModelVersion | None:
    """The version already registered from `source_run_id`, so re-registering the same variant adds nothing."""
    versions = client().search_model_versions(
        f"name = '{name}' and tags.`{contract.VERSION_TAG_SOURCE_RUN}` = '{source_run_id}'"
    )
    return versions[0] if versions else None


def register_deployable(name: str, source_run_id: str) -> ModelVersion:
    """Register the LiteRT deployable of a variant run, tagged with its lineage (or return the existing version)."""
    existing = version_from_run(name, source_run_id)
    if existing is not None:
        print(f"register: {name} version {existing.version} already holds run {source_run_id}: not registering again")
        return existing
    run = mlflow.get_run(source_run_id)
    tags = run.data.tags
    lineage = {
        contract.VERSION_TAG_VARIANT: tags.get(contract.TAG_VARIANT, ""),
        contract.VERSION_TAG_ACCURACY: str(run.data.metrics[contract.ACCURACY]),
        contract.VERSION_TAG_SIZE_GZIP_BYTES: str(int(run.data.metrics[contract.SIZE_GZIP_BYTES])),
        contract.VERSION_TAG_SOURCE_RUN: source_run_id,
        contract.VERSION_TAG_DATASET_DIGEST: tags.get(contract.TAG_DATASET_DIGEST, ""),
        contract.VERSION_TAG_PARENT_MODEL: tags.get(contract.TAG_PARENT_MODEL, ""),
        contract.VERSION_TAG_BASELINE_RUN: tags.get(contract.TAG_BASELINE_RUN, ""),
        contract.VERSION_TAG_RECIPE: tags.get(contract.TAG_RECIPE, "[]"),
    }
    model_uri = f"runs:/{source_run_id}/{contract.LITERT_MODEL}"
    version = mlflow.register_model(model_uri, name, tags=lineage)
    print(f"register: {model_uri} is {name} version {version.version}")
    return version


def lineage(name: str, version: str | int) -> list[dict]:
    """From a version back to the float baseline: each step's run, variant, parent model and settings."""
    source = get_version(name, version).tags[contract.VERSION_TAG_SOURCE_RUN]
    chain, run_id = [], source
    while run_id:
        run = mlflow.get_run(run_id)
        parent_uri = run.data.tags.get(contract.TAG_PARENT_MODEL, "")
        chain.append(
            {
                "run_id": run_id,
                "step": run.data.tags.get(contract.TAG_STEP),
                "variant": run.data.tags.get(contract.TAG_VARIANT),
                "parent_model": parent_uri,
                "params": dict(run.data.params),
            }
        )
        run_id = (source_run_id(parent_uri) or "") if parent_uri else ""
    return chain


def evaluation_data_of(version: ModelVersion):
    """The test split of the data the version was made from (the gate compares on one data set)."""
    params = mlflow.get_run(version.tags[contract.VERSION_TAG_SOURCE_RUN]).data.params
    return load_dataset(params.get("dataset", "digits"), image_size=int(float(params.get("image_size", 28))))


def accuracy_of(version: ModelVersion, x: np.ndarray, y: np.ndarray) -> float:
    try:
        predicted = predict_classes(f"models:/{version.name}/{version.version}", x)
    except Exception as error:  # a champion for other data: it cannot be compared on this test split
        raise RegistryError(
            f"{version.name} version {version.version} cannot predict the test data ({error}); "
            "promote with force=true if the new data set replaces the old one"
        ) from error
    return float((predicted == y).mean())


def gate(challenger: ModelVersion, thresholds: Thresholds) -> Verdict:
    """Evaluate challenger and champion on the challenger's test split and decide; the verdict is recorded."""
    champion = version_by_alias(challenger.name, contract.CHAMPION)
    data = evaluation_data_of(challenger)
    challenger_accuracy = accuracy_of(challenger, data.x_test, data.y_test)
    champion_accuracy = None if champion is None else accuracy_of(champion, data.x_test, data.y_test)
    verdict = decide(challenger_accuracy, champion_accuracy, thresholds)
    record_verdict(
        challenger, contract.VALIDATION_PASSED if verdict.passed else contract.VALIDATION_FAILED, verdict.reason
    )
    return verdict


def record_verdict(version: ModelVersion, status: str, reason: str) -> None:
    client().set_model_version_tag(version.name, version.version, contract.VERSION_TAG_VALIDATION_STATUS, status)
    client().set_model_version_tag(version.name, version.version, contract.VERSION_TAG_VALIDATION_REASON, reason)


def move_champion(name: str, version: str | int) -> str | None:
    """champion -> version; the old champion becomes previous. Returns the old champion's version."""
    old = version_by_alias(name, contract.CHAMPION)
    if old is not None and str(old.version) == str(version):
        return old.version
    if old is not None:
        client().set_registered_model_alias(name, contract.PREVIOUS, old.version)
    client().set_registered_model_alias(name, contract.CHAMPION, str(version))
    return None if old is None else old.version


def rollback(name: str) -> tuple[str, str]:
    """Swap champion and previous; returns (new champion, new previous)."""
    champion = version_by_alias(name, contract.CHAMPION)
    previous = version_by_alias(name, contract.PREVIOUS)
    if champion is None or previous is None:
        raise RegistryError(
            f"model {name!r} has no {contract.PREVIOUS!r} version to roll back to "
            f"(champion: {champion.version if champion else 'none'}); promote a version instead"
        )
    client().set_registered_model_alias(name, contract.CHAMPION, previous.version)
    client().set_registered_model_alias(name, contract.PREVIOUS, champion.version)
    return previous.version, champion.version


def describe(version: ModelVersion) -> str:
    recipe = json.loads(version.tags.get(contract.VERSION_TAG_RECIPE, "[]"))
    steps = " -> ".join(step["step"] for step in recipe) or "float baseline"
    return f"{version.name} v{version.version} ({version.tags.get(contract.VERSION_TAG_VARIANT, '?')}: {steps})"
