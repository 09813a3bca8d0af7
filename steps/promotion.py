"""The gate applied to registered versions: challenger and champion predict the same test samples, then decide.

Shared by register and promote (and later update). The decision is
`gate.decide`; the registry write is `registry.record_verdict` and
`registry.move_champion`; this module only gathers what the decision needs.
"""

from __future__ import annotations

import numpy as np
from mlflow.entities.model_registry import ModelVersion

from steps import contract
from steps.data import Dataset
from steps.gate import Verdict, decide
from steps.lineage import data_of_run
from steps.pyfunc import predict_classes
from steps.reference import reference_of
from steps.registry import (
    RegistryError,
    describe,
    model_uri,
    move_champion,
    record_verdict,
    register_deployable,
    set_challenger,
    version_by_alias,
)
from steps.settings import GateConfig


def register_challenger(name: str, run_id: str, thresholds: GateConfig) -> tuple[ModelVersion, Verdict]:
    """A variant run's deployable registered as challenger (once), profiled for monitoring, then gated."""
    version = register_deployable(name, run_id)
    set_challenger(version)
    reference_of(version)  # made now, while its data is at hand: monitor compares live traffic with it
    return version, promote_if_passing(version, thresholds)


def correct_per_sample(version: ModelVersion, data: Dataset) -> np.ndarray:
    try:
        predicted = predict_classes(model_uri(version), data.x_test)
    except Exception as error:  # a champion for other data: it cannot be compared on this test split
        raise RegistryError(
            f"{describe(version)} cannot predict the test data ({error}); "
            "promote with force=true if the new data set replaces the old one"
        ) from error
    return predicted == data.y_test


def gate(challenger: ModelVersion, thresholds: GateConfig) -> Verdict:
    """Challenger and champion on the challenger's test split, decided (not yet recorded)."""
    champion = version_by_alias(challenger.name, contract.CHAMPION)
    data = data_of_run(challenger.tags[contract.VERSION_TAG_SOURCE_RUN])  # the gate compares on its test split
    champion_correct = None if champion is None else correct_per_sample(champion, data)
    return decide(correct_per_sample(challenger, data), champion_correct, thresholds)


def promote_if_passing(version: ModelVersion, thresholds: GateConfig) -> Verdict:
    """Run the gate for `version`, record the verdict, and make it champion if it passes."""
    champion = version_by_alias(version.name, contract.CHAMPION)
    if champion is not None and champion.version == version.version:
        verdict = Verdict(contract.VALIDATION_UNCHANGED, f"version {version.version} is already the champion")
    else:
        verdict = gate(version, thresholds)
    record_verdict(version, verdict)
    if verdict.status == contract.VALIDATION_PASSED:
        announce_champion(version, move_champion(version.name, version.version))
    return verdict


def force_promote(version: ModelVersion) -> Verdict:
    """Make `version` champion around the gate; recorded as forced."""
    old = move_champion(version.name, version.version)
    reason = f"forced by promote (gate skipped); previous champion v{old}" if old else "forced by promote"
    verdict = Verdict(contract.VALIDATION_FORCED, reason)
    record_verdict(version, verdict)
    announce_champion(version, old)
    return verdict


def announce_champion(version: ModelVersion, old: str | None) -> None:
    previous = f"; v{old} is {contract.PREVIOUS}" if old and str(old) != str(version.version) else ""
    print(f"{describe(version)} is now {contract.CHAMPION}{previous}")
