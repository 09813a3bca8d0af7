"""Registry reads and writes: versions with lineage tags, the gate's verdict, and alias moves. MLflow only.

Aliases (champion, challenger, previous) decide what is served; stages are
deprecated in MLflow and not used. Every champion move goes through
`move_champion` or `rollback`, so `previous` always holds the champion before
the last move; every verdict goes through `record_verdict`.

MLflow writes one alias at a time, with no compare-and-set, so two processes
moving the champion at once could each record the same `previous`. A move is
therefore ordered by its `promoted_at` tag, written first, and the aliases are
then settled to what the tags say: champion the latest-stamped version,
previous the one before it, read again and rewritten until they agree. Every
process settles after its own writes, so the last one to finish leaves both
aliases matching every stamp (tests/test_team.py runs four at once). Two
processes writing the same alias at the same moment can also collide in the
store itself (a tracking server answers 500): such a write is read again and
retried after a short random pause.
"""

from __future__ import annotations

import json
import random
import time

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from steps import contract
from steps.parameters import REFUSALS, StepFailed, UsageError
from steps.release.gate import Verdict


class RegistryError(UsageError):
    """A registry request that cannot be done as asked; the message says why and what to do."""


def client() -> mlflow.MlflowClient:
    return mlflow.MlflowClient()


def version_by_alias(name: str, alias: str) -> ModelVersion | None:
    try:
        return client().get_model_version_by_alias(name, alias)
    except MlflowException as error:
        if error.error_code in REFUSALS:  # a server with authentication said no: not a missing version
            raise
        return None  # no such alias (or no such model yet)


def get_version(name: str, version: str | int) -> ModelVersion:
    try:
        return client().get_model_version(name, str(version))
    except MlflowException as error:
        if error.error_code in REFUSALS:  # a server with authentication said no: not a missing version
            raise
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
    for tag, metric in (
        (contract.VERSION_TAG_ROBUST_ACCURACY, contract.ROBUST_ACCURACY),
        (contract.VERSION_TAG_FLIP_RATE, contract.FLIP_RATE),
    ):
        if metric in run.data.metrics:  # runs with robustness off, and the float baseline, have none
            lineage[tag] = str(run.data.metrics[metric])
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
        return str(old.version)
    _stamp_move(name, str(version), old)
    champion, previous = _settle_aliases(name)
    if champion != str(version):
        print(f"registry: {name} v{version} became champion, then v{champion} by a later move of another process")
    return previous


def _stamps(name: str) -> dict[str, float]:
    """version -> its promoted_at stamp: when it last became champion (`update` reads the traffic after it)."""
    versions = client().search_model_versions(f"name = '{name}'")
    return {
        str(v.version): float(v.tags[contract.VERSION_TAG_PROMOTED_AT])
        for v in versions
        if contract.VERSION_TAG_PROMOTED_AT in v.tags
    }


def _stamp_move(name: str, version: str, champion: ModelVersion | None) -> None:
    """Order this move after every other: a stamp later than all (clocks of other machines may lag)."""
    for _ in range(SETTLE_ATTEMPTS):
        stamps = _stamps(name)
        latest = max(stamps.values(), default=0.0)
        adopted = True
        if champion is not None and str(champion.version) not in stamps:  # set by hand: that move counts too
            latest = max(time.time(), latest + 0.001)
            adopted = _write(
                client().set_model_version_tag,
                name,
                str(champion.version),
                contract.VERSION_TAG_PROMOTED_AT,
                f"{latest:.3f}",
            )
        moment = max(time.time(), latest + 0.001)
        if adopted and _write(
            client().set_model_version_tag, name, version, contract.VERSION_TAG_PROMOTED_AT, f"{moment:.3f}"
        ):
            return
    raise StepFailed(f"could not record the move of {name} v{version}: {_BUSY}")


SETTLE_ATTEMPTS = 10
_BUSY = "another process keeps writing the same registry entries; run it again when that is done"


def _settle_aliases(name: str) -> tuple[str, str | None]:
    """Make champion and previous the two latest-stamped versions; read back until they agree."""
    for _ in range(SETTLE_ATTEMPTS):
        stamps = _stamps(name)
        order = sorted(stamps, key=lambda v: (stamps[v], int(v)))
        champion, previous = order[-1], (order[-2] if len(order) > 1 else None)
        aliases = {alias: str(v) for alias, v in client().get_registered_model(name).aliases.items()}
        if aliases.get(contract.CHAMPION) == champion and previous in (None, aliases.get(contract.PREVIOUS)):
            return champion, previous
        if previous is not None:
            _write(client().set_registered_model_alias, name, contract.PREVIOUS, previous)
        _write(client().set_registered_model_alias, name, contract.CHAMPION, champion)
    raise StepFailed(
        f"the aliases of {name!r} still disagree with the promotions after {SETTLE_ATTEMPTS} attempts: {_BUSY}"
    )


def _write(write, *args) -> bool:
    """One registry write; False when the store refused it because another process wrote the same row at the
    same moment (MLflow's alias and tag writes are a read then an insert: the second insert collides). The
    caller reads again and retries after a short random pause, so the colliding processes fall apart."""
    try:
        write(*args)
        return True
    except MlflowException as error:
        if not is_collision(error):
            raise
        time.sleep(random.uniform(0.05, 0.5))
        return False


def is_collision(error: MlflowException) -> bool:
    """Another process wrote the same row at the same moment. A tracking server on PostgreSQL answers some of
    these as BAD_REQUEST (MLflow maps every SQLAlchemy error to it): only its unique-key message counts, so a
    request that is really malformed is still raised, not retried."""
    if error.error_code in COLLISIONS:
        return True
    return error.error_code == "BAD_REQUEST" and any(word in error.message for word in UNIQUE_KEY_CLASHES)


# How a colliding write comes back: a tracking server answers 500 (its store's IntegrityError); a local SQL
# store raises the same as a conflict or an internal error
COLLISIONS = ("INTERNAL_ERROR", "RESOURCE_ALREADY_EXISTS", "ABORTED", "TEMPORARILY_UNAVAILABLE")
UNIQUE_KEY_CLASHES = ("UniqueViolation", "UNIQUE constraint", "IntegrityError")


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
    _stamp_move(name, str(previous.version), champion)
    return _settle_aliases(name)


def describe(version: ModelVersion) -> str:
    recipe = json.loads(version.tags.get(contract.VERSION_TAG_RECIPE, "[]"))
    steps = " -> ".join(step["step"] for step in recipe) or "float baseline"
    return f"{version.name} v{version.version} ({version.tags.get(contract.VERSION_TAG_VARIANT, '?')}: {steps})"
