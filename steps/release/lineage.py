"""How runs relate: which run logged a model, the baseline and recipe a variant carries, a version's ancestry.

MLflow reads and tags only (no TensorFlow): register, promote and the
pipeline use it as much as the compression steps do.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
from mlflow.exceptions import MlflowException

from steps import contract
from steps.core.selection import VariantRow
from steps.datasets.data import Dataset, load_dataset
from steps.modeling.measure import Baseline
from steps.parameters import UsageError
from steps.release.registry import get_version
from steps.release.tracking import check_store
from steps.settings import TrainConfig


def is_model_uri(reference: str) -> bool:
    """An MLflow model URI (runs:/, models:/, s3://, ...) rather than a local file path."""
    return "://" in reference or reference.startswith(("runs:/", "models:/"))


def check_model_reference(reference: str, name: str) -> None:
    """Refuse a model that cannot be found, before any heavy import: a URI's MLmodel is read from its store (whose
    own error names what is missing: run, model, version), a path must exist, and the store must take this user."""
    if is_model_uri(reference):
        mlflow.models.get_model_info(reference)
        return
    check_store()
    if not Path(reference).expanduser().exists():
        raise UsageError(
            f"{name} {reference!r} does not exist; give an MLflow model URI (runs:/<run_id>/{contract.KERAS_MODEL}, "
            "models:/<name>@<alias>) or the path of a saved model"
        )


def checked_inputs(dataset: str, image_size: int, model: str, name: str) -> Dataset:
    """A stage's data set loaded and its model found (with no model, the store asked once), before the stage
    imports TensorFlow (seconds and hundreds of MB): a mistake in either is told at once, in one line."""
    data = load_dataset(dataset, image_size=image_size)
    if model:
        check_model_reference(model, name)
    else:
        check_store()
    return data


def source_run_id(uri: str) -> str | None:
    """The run that logged the model at `uri`, or None for a plain file."""
    if not is_model_uri(uri):
        return None
    return mlflow.models.get_model_info(uri).run_id


def set_lineage_tags(baseline: Baseline, recipe: list[dict]) -> None:
    """Tags that let any later step find this run's baseline and the steps that made it."""
    tags = {
        contract.TAG_BASELINE_ACCURACY: str(baseline.accuracy),
        contract.TAG_BASELINE_VAL_ACCURACY: str(baseline.val_accuracy),
        contract.TAG_BASELINE_GZIP_BYTES: str(baseline.gzip_bytes),
        contract.TAG_RECIPE: json.dumps(recipe),
    }
    if baseline.run_id:
        tags[contract.TAG_BASELINE_RUN] = baseline.run_id
    if baseline.robust_accuracy is not None:
        tags[contract.TAG_BASELINE_ROBUSTNESS] = baseline.robustness_mode
        tags[contract.TAG_BASELINE_ROBUST_ACCURACY] = str(baseline.robust_accuracy)
        tags[contract.TAG_BASELINE_VAL_ROBUST_ACCURACY] = str(baseline.val_robust_accuracy)
    mlflow.set_tags(tags)


def baseline_of(tags: dict[str, str]) -> Baseline | None:
    """The baseline recorded on a run made by an rtdeploy step, or None for any other run."""
    if contract.TAG_BASELINE_VAL_ACCURACY not in tags:
        return None
    robust = contract.TAG_BASELINE_ROBUST_ACCURACY in tags  # runs before robustness, or measured with it off: none
    return Baseline(
        tags.get(contract.TAG_BASELINE_RUN, ""),
        float(tags[contract.TAG_BASELINE_ACCURACY]),
        float(tags[contract.TAG_BASELINE_VAL_ACCURACY]),
        int(tags[contract.TAG_BASELINE_GZIP_BYTES]),
        tags.get(contract.TAG_BASELINE_ROBUSTNESS, "off"),
        float(tags[contract.TAG_BASELINE_ROBUST_ACCURACY]) if robust else None,
        float(tags[contract.TAG_BASELINE_VAL_ROBUST_ACCURACY]) if robust else None,
    )


def test_predictions_of(run_id: str) -> np.ndarray | None:
    """The predicted class per test sample a step's run logged for its deployable (None for older runs)."""
    try:
        logged = mlflow.artifacts.load_dict(f"runs:/{run_id}/{contract.TEST_PREDICTIONS_FILE}")
    except MlflowException:
        return None
    return np.asarray(logged["predicted"])


def recipe_of(tags: dict[str, str]) -> list[dict]:
    return json.loads(tags.get(contract.TAG_RECIPE, "[]"))


def data_of_run(run_id: str) -> Dataset:
    """The data set a step's run used, loaded and split as that run did (from its dataset and image_size)."""
    params = mlflow.get_run(run_id).data.params
    defaults = TrainConfig()
    image_size = int(float(params.get("image_size", defaults.image_size)))
    return load_dataset(params.get("dataset", defaults.dataset), image_size=image_size)


def variant_of(model_uri: str) -> str:
    """The variant tag of the run that logged the model ("" if it has none)."""
    run_id = source_run_id(model_uri)
    return mlflow.get_run(run_id).data.tags.get(contract.TAG_VARIANT, "") if run_id else ""


@dataclass(frozen=True)
class LineageEntry:
    """One run in a version's ancestry."""

    run_id: str
    step: str  # its rtdeploy.step: train, prune, cluster, quantize, trial
    variant: str
    parent_model: str  # the model URI it was made from ("" for a train run from scratch)
    params: dict[str, str]  # its parameters, as `mlflow run` recorded them (shell-quoted)
    made: dict  # the step's own entry of its recipe tag, as it recorded it


def lineage(name: str, version: str | int) -> list[LineageEntry]:
    """From a version back to the float baseline: each step's run, variant, parent model and settings."""
    run_id = get_version(name, version).tags[contract.VERSION_TAG_SOURCE_RUN]
    chain = []
    while run_id:
        run = mlflow.get_run(run_id)
        tags = run.data.tags
        parent_uri = tags.get(contract.TAG_PARENT_MODEL, "")
        made = (recipe_of(tags) or [{}])[-1]
        chain.append(
            LineageEntry(
                run_id,
                tags.get(contract.TAG_STEP, ""),
                tags.get(contract.TAG_VARIANT, ""),
                parent_uri,
                dict(run.data.params),
                made,
            )
        )
        run_id = (source_run_id(parent_uri) or "") if parent_uri else ""
    return chain


def variant_row(run_id: str) -> VariantRow:
    """A variant run as the selection functions see it."""
    run = mlflow.get_run(run_id)
    return VariantRow(run_id, run.data.tags[contract.TAG_STEP], run.data.tags[contract.TAG_VARIANT], run.data.metrics)


def variant_rows_of_pipeline(pipeline_run_id: str) -> list[VariantRow]:
    """Every variant a main run made or reused, found through its step-run tags (register runs are no variant)."""
    prefix = contract.TAG_STEP_RUN.format(step="")
    tags = mlflow.get_run(pipeline_run_id).data.tags
    runs = [mlflow.get_run(run_id) for key, run_id in sorted(tags.items()) if key.startswith(prefix)]
    if not runs:
        raise UsageError(
            f"run {pipeline_run_id} is not a main (pipeline) run: it has no step runs; pass the run id of `main`"
        )
    return [variant_row(run.info.run_id) for run in runs if contract.TAG_VARIANT in run.data.tags]
