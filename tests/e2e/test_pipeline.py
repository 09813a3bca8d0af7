"""`mlflow run .` on the built-in digits: a FINISHED main run whose train child reaches the target,
whose compressed variants carry their lineage and meet the size goal, and whose child runs are
reused only while nothing changed."""

from __future__ import annotations

import dataclasses
import json
import sys

import mlflow
import pytest
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from PIL import Image

from steps import contract
from steps.core.plan import COMPRESSION_PLAN
from steps.core.selection import Budget, select_best
from steps.parameters import as_parameters
from steps.release.child_runs import run_step
from steps.release.lineage import variant_row
from steps.settings import PipelineConfig, TrainConfig
from tests.support.commands import entry_point_runs, mlflow_run, run_command

pytestmark = pytest.mark.e2e
TARGET_ACCURACY = 0.97


def test_main_finishes_with_a_nested_train_run_above_the_target(first_main):
    main, train = first_main
    assert main.info.status == "FINISHED" and train.info.status == "FINISHED"
    assert train.data.tags[MLFLOW_PARENT_RUN_ID] == main.info.run_id
    assert train.data.metrics[contract.ACCURACY] >= TARGET_ACCURACY


def test_main_runs_land_in_a_named_model_training_experiment_with_readable_run_names(first_main):
    main, train = first_main
    experiment = mlflow.get_experiment(main.info.experiment_id)
    assert experiment.name == contract.EXPERIMENT
    assert experiment.tags[contract.EXPERIMENT_KIND_TAG] == contract.EXPERIMENT_KIND  # opens on the runs table
    assert (main.info.run_name, train.info.run_name) == (contract.MAIN, contract.TRAIN)
    register = mlflow.get_run(main.data.tags[contract.TAG_STEP_RUN.format(step=contract.REGISTER)])
    assert register.info.run_name == contract.REGISTER and register.info.experiment_id == experiment.experiment_id


def test_train_run_logs_params_curves_metrics_and_dataset(first_main):
    _, train = first_main
    assert set(train.data.params) == {f.name for f in dataclasses.fields(TrainConfig)} | {contract.LEARNING_RATE_USED}
    assert train.data.params["learning_rate"] == "auto" and train.data.params[contract.LEARNING_RATE_USED] == "0.001"
    assert train.data.tags[contract.TAG_STEP] == "train"
    assert train.data.tags[contract.TAG_VARIANT] == contract.FLOAT32_VARIANT
    metrics = train.data.metrics
    assert set(contract.VARIANT_METRICS) <= set(metrics)
    assert metrics[contract.ACCURACY_DROP] == 0.0 and metrics[contract.COMPRESSION_RATIO] == 1.0
    assert 100_000 <= metrics[contract.PARAMS] <= 300_000
    assert metrics[contract.SIZE_GZIP_BYTES] < metrics[contract.SIZE_BYTES]
    assert 0 < metrics[contract.LATENCY_P50_MS] <= metrics[contract.LATENCY_P95_MS] <= metrics[contract.LATENCY_P99_MS]
    curve = mlflow.MlflowClient().get_metric_history(train.info.run_id, contract.EPOCH_METRICS["val_loss"])
    assert len(curve) == metrics[contract.EPOCHS_TRAINED] > 1
    contexts = {
        tag.value
        for dataset_input in train.inputs.dataset_inputs
        for tag in dataset_input.tags
        if tag.key == "mlflow.data.context"
    }
    assert contexts == {"train", "validation", "test"}
    assert all(d.dataset.name == "digits" and d.dataset.digest for d in train.inputs.dataset_inputs)
    assert len(train.data.tags[contract.TAG_DATASET_DIGEST]) == 16


def test_both_models_load_back_in_a_fresh_process_and_agree(first_main):
    _, train = first_main
    run_id = train.info.run_id
    script = f"""
import json, mlflow, numpy as np
import steps
from steps.datasets.data import load_dataset
data = load_dataset("digits")
keras_model = mlflow.tensorflow.load_model("runs:/{run_id}/{contract.KERAS_MODEL}")
keras_pyfunc = mlflow.pyfunc.load_model("runs:/{run_id}/{contract.KERAS_MODEL}")
litert = mlflow.pyfunc.load_model("runs:/{run_id}/{contract.LITERT_MODEL}")
k = keras_model.predict(data.x_test, verbose=0).argmax(1)
print(json.dumps({{
    "keras_accuracy": float((k == data.y_test).mean()),
    "pyfunc_same": bool((np.asarray(keras_pyfunc.predict(data.x_test)).argmax(1) == k).all()),
    "litert_agreement": float((litert.predict(data.x_test).argmax(1) == k).mean()),
}}))
"""
    result = run_command([sys.executable, "-c", script])
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["keras_accuracy"] == pytest.approx(train.data.metrics[contract.KERAS_ACCURACY])
    assert loaded["pyfunc_same"]
    assert loaded["litert_agreement"] >= 0.995


def test_running_main_again_reuses_the_finished_train_run(first_main):
    _, train = first_main
    result = mlflow_run()
    assert result.returncode == 0, result.stderr[-3000:]
    assert "reusing finished run" in result.stdout + result.stderr
    second_main = entry_point_runs("main")[-1]
    assert second_main.data.tags[contract.TAG_STEP_RUN.format(step="train")] == train.info.run_id
    started_since = [
        run
        for entry_point in ("train", "prune", "cluster", "quantize")
        for run in entry_point_runs(entry_point)
        if run.info.start_time > second_main.info.start_time
    ]
    assert started_since == []
    versions = mlflow.MlflowClient().search_model_versions("name = 'digits-classifier'")
    assert len(versions) == 1, "the same best variant must not be registered twice"


def test_a_changed_parameter_is_not_served_from_the_cache(first_main):
    _, train = first_main
    parameters = as_parameters(TrainConfig(epochs=2))
    with mlflow.start_run(run_name="cache-check") as parent:
        run_id = run_step("train", parameters, env_manager="local")
    assert run_id != train.info.run_id
    new_train = mlflow.get_run(run_id)
    assert new_train.data.params["epochs"] == "2"
    assert new_train.data.tags[MLFLOW_PARENT_RUN_ID] == parent.info.run_id
    with mlflow.start_run(run_name="cache-check-again"):
        assert run_step("train", parameters, env_manager="local") == run_id  # and now that one is reused


def test_main_derives_every_compression_variant_with_lineage(first_main):
    main, train = first_main
    runs = {p.key: mlflow.get_run(main.data.tags[contract.TAG_STEP_RUN.format(step=p.key)]) for p in COMPRESSION_PLAN}
    variants = {run.data.tags[contract.TAG_VARIANT] for run in runs.values()}
    assert {
        "dynamic",
        "float16",
        "int8",
        "qat-int8",
        "pruned80-int8",
        "pruned2:4-int8",
        "c16-int8",
        "pruned80-c16-qat-int8",
    } <= variants
    for planned in COMPRESSION_PLAN:
        run = runs[planned.key]
        parent_run = train if planned.parent == contract.TRAIN else runs[planned.parent]
        assert run.data.tags[contract.TAG_STEP] == planned.entry_point
        assert run.info.run_name == run.data.tags[contract.TAG_VARIANT]  # the runs table reads without opening runs
        assert run.data.tags[contract.TAG_PARENT_MODEL] == f"runs:/{parent_run.info.run_id}/{contract.KERAS_MODEL}"
        assert run.data.tags[contract.TAG_BASELINE_RUN] == train.info.run_id
        assert run.data.tags[MLFLOW_PARENT_RUN_ID] == main.info.run_id
        assert set(contract.VARIANT_METRICS) <= set(run.data.metrics)
    recipe = json.loads(runs["pruned-clustered-qat-int8"].data.tags[contract.TAG_RECIPE])
    assert [step["step"] for step in recipe] == ["prune", "cluster", "quantize"]
    assert recipe[-1]["scheme"] == "PCQAT"
    client = mlflow.MlflowClient()
    assert "sparsity_per_layer.json" in {f.path for f in client.list_artifacts(runs["pruned"].info.run_id)}
    assert "unique_values_per_layer.json" in {f.path for f in client.list_artifacts(runs["clustered"].info.run_id)}


ROBUST_METRICS = {
    contract.ROBUST_ACCURACY,
    contract.VAL_ROBUST_ACCURACY,
    contract.ROBUST_ACCURACY_DROP,
    contract.VAL_ROBUST_ACCURACY_DROP,
    *(contract.robust_accuracy_of(kind) for kind in contract.ROBUSTNESS_KINDS),
}


def test_every_variant_reports_its_robustness_and_what_compression_forgot(first_main):
    main, train = first_main
    client = mlflow.MlflowClient()
    assert ROBUST_METRICS <= set(train.data.metrics) and train.data.metrics[contract.ROBUST_ACCURACY_DROP] == 0
    assert train.data.metrics[contract.ROBUST_ACCURACY] < train.data.metrics[contract.ACCURACY]
    for planned in COMPRESSION_PLAN:
        run = mlflow.get_run(main.data.tags[contract.TAG_STEP_RUN.format(step=planned.key)])
        metrics = run.data.metrics
        assert ROBUST_METRICS | {contract.FLIP_RATE} <= set(metrics), planned.key
        assert metrics[contract.ROBUST_ACCURACY_DROP] == pytest.approx(
            train.data.metrics[contract.ROBUST_ACCURACY] - metrics[contract.ROBUST_ACCURACY]
        )
        robustness = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/{contract.ROBUSTNESS_FILE}")
        assert set(robustness["test"]["kinds"]) == set(contract.ROBUSTNESS_KINDS)
        assert all(len(kind["accuracy"]) == 5 for kind in robustness["validation"]["kinds"].values())
        assert robustness["test"]["mean"] == pytest.approx(metrics[contract.ROBUST_ACCURACY])
        artifacts = {f.path for f in client.list_artifacts(run.info.run_id)}
        assert contract.FORGETTING_TABLE in artifacts
        assert (contract.FLIPPED_FIGURE in artifacts) == (metrics[contract.FLIP_RATE] > 0)


def test_a_variant_that_loses_robust_accuracy_is_refused_by_the_robustness_budget(first_main):
    """Pruned to 97% in one epoch: whatever the accuracy budget admits, the default robustness budget does not."""
    _, train = first_main
    parent = f"model_uri=runs:/{train.info.run_id}/{contract.KERAS_MODEL}"
    result = mlflow_run("-e", "prune", "-P", parent, "-P", "target_sparsity=0.97", "-P", "epochs=1")
    assert result.returncode == 0, result.stderr[-3000:]
    fragile = variant_row(entry_point_runs("prune")[-1].info.run_id)
    rows = [variant_row(train.info.run_id), fragile]
    default = PipelineConfig().budget
    loose_on_accuracy = Budget(0.99, default.max_robust_accuracy_drop)
    assert fragile[contract.VAL_ROBUST_ACCURACY_DROP] > default.max_robust_accuracy_drop
    assert loose_on_accuracy.exceeded(fragile.metrics) == [
        f"{contract.VAL_ROBUST_ACCURACY_DROP} {fragile[contract.VAL_ROBUST_ACCURACY_DROP]:+.4f} > "
        f"{default.max_robust_accuracy_drop}"
    ]
    assert select_best(rows, loose_on_accuracy).run_id == train.info.run_id  # the smaller one is refused
    assert select_best(rows, Budget(0.99, 0.99)).run_id == fragile.run_id


def test_best_variant_within_half_a_point_is_at_least_10x_smaller(first_main):
    main, train = first_main
    best_ratio = main.data.metrics[contract.BEST_COMPRESSION_RATIO]
    assert best_ratio >= 10, (
        f"best variant {main.data.tags[contract.TAG_BEST_VARIANT]} is only {best_ratio:.1f}x smaller"
    )


def test_main_logs_a_comparison_table_and_a_plot(first_main, tmp_path):
    main, _ = first_main
    table = mlflow.MlflowClient().load_table(main.info.experiment_id, contract.VARIANTS_TABLE, [main.info.run_id])
    assert len(table) == 1 + len(COMPRESSION_PLAN)
    columns = {
        "variant",
        "run_id",
        contract.VAL_ACCURACY_DROP,
        contract.ACCURACY,
        contract.ACCURACY_LOW,
        contract.ACCURACY_HIGH,
        contract.SIZE_GZIP_BYTES,
        contract.LATENCY_P50_MS,
    }
    assert columns <= set(table.columns)
    path = mlflow.artifacts.download_artifacts(
        run_id=main.info.run_id, artifact_path=contract.VARIANTS_FIGURE, dst_path=str(tmp_path)
    )
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 800
