"""update's last stage, a nested `gate` run: register the challenger, judge it on old and new data, check that
it serves, and promote it only if all pass (the decision is `gate.decide_update`; the writes are registry's)."""

from __future__ import annotations

import dataclasses

import mlflow
import numpy as np
from mlflow.entities.model_registry import ModelVersion

from steps import contract
from steps.adapt.update_data import UpdateData
from steps.modeling.pyfunc import predict_classes
from steps.monitoring.version_profiles import reference_of
from steps.release.gate import Verdict, decide_update
from steps.release.infra import serving_problem
from steps.release.promotion import announce_champion
from steps.release.registry import (
    client,
    describe,
    model_uri,
    move_champion,
    record_verdict,
    register_deployable,
    restore_challenger,
    set_challenger,
    version_by_alias,
)
from steps.settings import UpdateConfig


def gate_update(
    config: UpdateConfig, champion: ModelVersion, source_run_id: str, data: UpdateData, source: str, digest: str
) -> tuple[ModelVersion, Verdict, dict[str, float]]:
    """The challenger made by `source_run_id` against `champion`; returns it, the recorded verdict and the
    accuracies."""
    with mlflow.start_run(run_name=contract.GATE, nested=True):
        mlflow.set_tag(contract.TAG_STEP, contract.GATE)
        version = register_deployable(config.model_name, source_run_id)
        for key, value in {
            contract.VERSION_TAG_PARENT_VERSION: champion.version,
            contract.VERSION_TAG_DATA_SOURCE: source,
            contract.VERSION_TAG_NEW_DATA_DIGEST: digest,
        }.items():
            client().set_model_version_tag(version.name, version.version, key, str(value))
        challenger_before = version_by_alias(version.name, contract.CHALLENGER)
        set_challenger(version)
        reference_of(version)  # monitor compares the traffic it will answer with the new data it learned
        both = np.concatenate([data.x_test, data.x_new_test])  # one load of each model, one call
        challenger_classes, champion_classes = (predict_classes(model_uri(v), both) for v in (version, champion))
        split = len(data.y_test)
        old = (challenger_classes[:split] == data.y_test, champion_classes[:split] == data.y_test)
        new = (challenger_classes[split:] == data.y_new_test, champion_classes[split:] == data.y_new_test)
        verdict, accuracies = decide_update(old, new, config.max_old_drop)
        mlflow.log_metrics(accuracies)
        if not verdict.refused:
            problem = serving_problem(model_uri(version), data.x_new_test, challenger_classes[split:])
            if problem is not None:
                verdict = dataclasses.replace(
                    verdict,
                    status=contract.VALIDATION_FAILED,
                    reason=f"{verdict.reason}; but it does not serve: {problem}",
                )
        record_verdict(version, verdict)
        if verdict.status == contract.VALIDATION_PASSED:
            announce_champion(version, move_champion(version.name, version.version))
        else:  # the refusal is on the version; the aliases stay as they were
            restore_challenger(version.name, challenger_before)
    print(
        f"update: {describe(version)} against v{champion.version}: old test split "
        f"{accuracies[contract.CHALLENGER_ACCURACY_OLD]:.4f} vs {accuracies[contract.CHAMPION_ACCURACY_OLD]:.4f}, "
        f"new held-out data {accuracies[contract.CHALLENGER_ACCURACY_NEW]:.4f} vs "
        f"{accuracies[contract.CHAMPION_ACCURACY_NEW]:.4f}: {verdict.status}"
    )
    return version, verdict, accuracies
