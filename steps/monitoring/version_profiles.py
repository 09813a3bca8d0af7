"""The reference profile of a registered version: made by its deployable on held-out data, kept with its run.

`monitor` compares live traffic with it, so it never needs the training data.
It is made when a version is registered (and, for a version registered some
other way, the first time `monitor` needs it): the deployable predicts the
validation split of the version's data set, and the test split's clean windows
measure the false-alarm rate of the drift tests (steps/monitoring/reference_profile.py). It is logged
as the `reference/` artifact of the version's source run, next to the
deployable it describes. LiteRT and MLflow only: no tensorflow.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow
from mlflow.entities.model_registry import ModelVersion

from steps import contract
from steps.modeling.litert_runtime import LiteRTClassifier
from steps.monitoring.reference_profile import ProfileError, ReferenceProfile, calibrate, make_reference
from steps.release.lineage import data_of_run


def source_run_of(version: ModelVersion) -> str:
    return version.tags.get(contract.VERSION_TAG_SOURCE_RUN) or version.run_id


def reference_of(version: ModelVersion) -> ReferenceProfile:
    """The version's profile, made and logged first if its run has none yet. Only a run with no profile gets one
    made: a profile that cannot be downloaded (the store down, refused credentials) is an error, never replaced."""
    run_id = source_run_of(version)
    if not mlflow.MlflowClient().list_artifacts(run_id, contract.REFERENCE):  # registered before profiles existed
        return log_reference(run_id)
    with tempfile.TemporaryDirectory() as folder:
        local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=contract.REFERENCE, dst_path=folder)
        try:
            return ReferenceProfile.load(local)
        except ProfileError as error:  # written by an older rtdeploy: the profile is derived data, make it anew
            print(f"reference: run {run_id}: {error}")
            return log_reference(run_id)


def log_reference(run_id: str) -> ReferenceProfile:
    """Make the profile of the deployable logged by `run_id` and log it there as `reference/`."""
    reference = make_profile(run_id)
    with tempfile.TemporaryDirectory() as folder:
        reference.save(folder)
        mlflow.MlflowClient().log_artifacts(run_id, folder, contract.REFERENCE)
    alarms = reference.false_alarms(50)
    measured = f"; measured false alarms: {alarms}" if alarms else ""
    print(f"reference: profile of run {run_id} logged ({reference.source}{measured})")
    return reference


def make_profile(run_id: str) -> ReferenceProfile:
    """The deployable's outputs on the validation split (the profile) and on the test split (its calibration)."""
    data = data_of_run(run_id)
    classifier = deployable_of(run_id)
    metrics = mlflow.get_run(run_id).data.metrics
    latency = {key: metrics[key] for key in (contract.LATENCY_P50_MS, contract.LATENCY_P99_MS) if key in metrics}
    reference = make_reference(
        classifier.predict_proba(data.x_val),
        data.y_val,
        data.x_val,
        class_names=data.class_names,
        latency=latency,
        source=f"validation split of {data.name} (digest {data.digest}), {len(data.y_val)} samples",
    )
    return calibrate(
        reference,
        classifier.predict_proba(data.x_test),
        data.x_test,
        source=f"test split of {data.name}, {len(data.y_test)} samples, cut into disjoint windows per size",
    )


def deployable_of(run_id: str) -> LiteRTClassifier:
    with tempfile.TemporaryDirectory() as folder:
        local = Path(mlflow.artifacts.download_artifacts(f"runs:/{run_id}/{contract.LITERT_MODEL}", dst_path=folder))
        return LiteRTClassifier.from_file(str(next(local.rglob("*.tflite"))))
