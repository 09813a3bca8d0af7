"""Registry reads and writes: versions with lineage tags, the gate's verdict, and alias moves. MLflow only.

Aliases (champion, challenger, previous) decide what is served; stages are
deprecated in MLflow and not used. Every champion move goes through
`move_champion` or `rollback`, so `previous` always holds the champion before
the last move; every verdict goes through `record_verdict`.
"""

from __future__ import annotations

import json
import time

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from steps import contract
from steps.gate import Verdict


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


def model_uri(version: ModelVersion) -> str:
    return f"models:/{version.name}/{version.version}"


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
    uri = f"runs:/{source_run_id}/{contract.LITERT_MODEL}"
    version = mlflow.register_model(uri, name, tags=lineage)
    print(f"register: {uri} is {name} version {version.version}")
    return version


def record_verdict(version: ModelVersion, verdict: Verdict) -> None:
    """The one writer of a verdict: on the version (its tags) and on the active run (tags and metrics)."""
    version_tags = {
        contract.VERSION_TAG_VALIDATION_STATUS: verdict.status,
        contract.VERSION_TAG_VALIDATION_REASON: verdict.reason,
    }
    if verdict.comparison is not None:
        version_tags[contract.VERSION_TAG_MCNEMAR_P_VALUE] = f"{verdict.comparison.p_value:.6g}"
    if verdict.status != contract.VALIDATION_UNCHANGED:  # keep the verdict that made it champion
        for key, value in version_tags.items():
            client().set_model_version_tag(version.name, version.version, key, value)
    run_tags = {contract.TAG_MODEL_NAME: version.name, contract.TAG_MODEL_VERSION: version.version, **version_tags}
    if verdict.status == contract.VALIDATION_FORCED:
        run_tags[contract.TAG_FORCED] = "true"
    mlflow.set_tags(run_tags)
    mlflow.log_metrics(verdict.metrics)


def move_champion(name: str, version: str | int) -> str | None:
    """champion -> version; the old champion becomes previous. Returns the old champion's version."""
    old = version_by_alias(name, contract.CHAMPION)
    if old is not None and str(old.version) == str(version):
        return old.version
    if old is not None:
        client().set_registered_model_alias(name, contract.PREVIOUS, old.version)
    client().set_registered_model_alias(name, contract.CHAMPION, str(version))
    mark_promoted(name, version)
    return None if old is None else old.version


def mark_promoted(name: str, version: str | int) -> None:
    """When a version became champion: the start of the traffic it alone answered (update reads from there)."""
    client().set_model_version_tag(name, str(version), contract.VERSION_TAG_PROMOTED_AT, f"{time.time():.3f}")


def promoted_at(version: ModelVersion) -> float:
    """Unix seconds the version last became champion (its registration, for one promoted before this was kept)."""
    tag = version.tags.get(contract.VERSION_TAG_PROMOTED_AT)
    return float(tag) if tag else version.creation_timestamp / 1000


def set_challenger(version: ModelVersion) -> None:
    client().set_registered_model_alias(version.name, contract.CHALLENGER, version.version)


def restore_challenger(name: str, previous: ModelVersion | None) -> None:
    """Put the challenger alias back where it was (nowhere, if it was nowhere): a refused update changes no alias."""
    if previous is not None:
        client().set_registered_model_alias(name, contract.CHALLENGER, previous.version)
    else:
        client().delete_registered_model_alias(name, contract.CHALLENGER)


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
    mark_promoted(name, previous.version)
    return previous.version, champion.version


def describe(version: ModelVersion) -> str:
    recipe = json.loads(version.tags.get(contract.VERSION_TAG_RECIPE, "[]"))
    steps = " -> ".join(step["step"] for step in recipe) or "float baseline"
    return f"{version.name} v{version.version} ({version.tags.get(contract.VERSION_TAG_VARIANT, '?')}: {steps})"
