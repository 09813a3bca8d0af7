"""The gate applied to registered versions: challenger and champion predict the same test samples, then decide.

Shared by register and promote (and later update). The decision is
`gate.decide`; the registry write is `registry.record_verdict` and
`registry.move_champion`; this module only gathers what the decision needs.
"""

from __future__ import annotations

import mlflow
import numpy as np
from mlflow.entities.model_registry import ModelVersion

from steps import contract
from steps.datasets.data import Dataset
from steps.modeling.pyfunc import probability_function
from steps.modeling.robustness import corrupted, levels_of
from steps.monitoring.version_profiles import reference_of
from steps.release.gate import Verdict, decide
from steps.release.lineage import data_of_run
from steps.release.registry import (
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


def correct_per_sample(version: ModelVersion, data: Dataset, corrupted_sets: list[np.ndarray]):
    """The version's per-sample correctness on the test split, and on the corrupted copies of it concatenated
    (None when there are none), from one load of the model."""
    predict = probability_function(model_uri(version))
    clean = predict(data.x_test).argmax(axis=1) == data.y_test
    if not corrupted_sets:
        return clean, None
    return clean, np.concatenate([predict(x).argmax(axis=1) == data.y_test for x in corrupted_sets])


def robustness_mode_of(version: ModelVersion) -> str:
    """The robustness mode the version's run was measured in ("off" for runs that predate it)."""
    params = mlflow.get_run(version.tags[contract.VERSION_TAG_SOURCE_RUN]).data.params
    return params.get("robustness", "off")


def gate(challenger: ModelVersion, thresholds: GateConfig) -> Verdict:
    """Challenger and champion on the challenger's test split, decided (not yet recorded). A champion that
    cannot take that split (other input shape or classes) is no comparison: refused, saying how to replace it."""
    champion = version_by_alias(challenger.name, contract.CHAMPION)
    data = data_of_run(challenger.tags[contract.VERSION_TAG_SOURCE_RUN])  # the gate compares on its test split
    if champion is None:
        return decide(correct_per_sample(challenger, data, [])[0], None, thresholds)
    takes = tensor_shapes(model_uri(champion))
    if takes is not None and takes != (data.input_shape, data.n_classes):
        return Verdict(
            contract.VALIDATION_FAILED,
            f"{describe(champion)} takes inputs {takes[0]} and predicts {takes[1]} classes, but the challenger's test "
            f"data is {data.input_shape} with {data.n_classes} classes: the two cannot be compared on the same "
            "samples; if the new data set replaces the old one, promote it with force=true",
        )
    # the very corrupted images both were measured on, so their robust accuracies compare sample for sample
    levels = levels_of(robustness_mode_of(challenger))
    sets = [corrupted(data.x_test, data.y_test, kind, s) for kind, severities in levels.items() for s in severities]
    (challenger_clean, challenger_robust), (champion_clean, champion_robust) = (
        correct_per_sample(version, data, sets) for version in (challenger, champion)
    )
    robust = None if not sets else (challenger_robust, champion_robust)
    return decide(challenger_clean, champion_clean, thresholds, robust)


def tensor_shapes(uri: str) -> tuple[tuple[int, ...], int] | None:
    """(sample shape, number of classes) from a logged model's signature; None when it has none."""
    signature = mlflow.models.get_model_info(uri).signature
    if signature is None:
        return None
    inputs, outputs = signature.inputs.inputs[0].shape, signature.outputs.inputs[0].shape
    return tuple(inputs[1:]), outputs[-1]


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
