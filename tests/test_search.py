"""Compression search: sensitivity ceilings, the sensitivity-scaled targets, the choice within the budget, a
malformed storage URL refused in one line before TensorFlow, and (e2e) two `mlflow run . -e search` processes
completing one Optuna study in a shared SQLite storage, each trial a child run with the standard variant metrics,
the choice within the constraint on validation; and `update` re-making a searched champion from its trial's
per-layer targets."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import optuna
import pytest
from PIL import Image

from steps import contract
from steps.compress.sensitivity import MAX_SPARSITY, SPARSITIES, scaled_targets, tolerated_sparsity
from steps.core.selection import BUDGET_SLACK, within_budget
from steps.datasets.data import load_dataset
from steps.release.registry import version_by_alias
from steps.search import (
    FIRST_CLUSTERS,
    SCALE_RANGE,
    SETTINGS_ATTR,
    best_trial,
    earlier_twin,
    first_trials,
    nothing_within,
    scale_range,
)
from steps.settings import SearchConfig
from tests.support.commands import PROJECT, entry_point_runs, mlflow_run
from tests.support.stores import store_in


def rows(layer: str, drops: list[float]) -> list[dict]:
    return [{"layer": layer, "sparsity": s, "val_accuracy_drop": d} for s, d in zip(SPARSITIES, drops)]


def test_a_layers_ceiling_is_the_last_sparsity_before_its_drop_first_exceeds_the_tolerance():
    table = (
        rows("dense", [0, 0, 0.001, 0.004, 0.02, 0.1])
        + rows("conv", [0.03, 0, 0, 0, 0, 0])
        + rows(
            "head",
            [0, 0.02, 0, 0, 0, 0],  # recovering at 80% after failing at 70% does not count
        )
    )
    assert tolerated_sparsity(table, 0.005) == {"dense": 0.9, "conv": 0.0, "head": 0.5}


def test_one_scale_moves_every_layer_relative_to_its_own_ceiling_and_never_prunes_everything():
    assert scaled_targets({"dense": 0.9, "conv": 0.5}, 0.5) == {"dense": 0.45, "conv": 0.25}
    assert scaled_targets({"dense": 0.98}, 1.2) == {"dense": MAX_SPARSITY}


def test_the_scale_stops_where_every_layer_has_reached_the_most_sparsity_and_the_first_trials_start_below():
    assert scale_range({"conv": 0.98, "dense": 0.98}) == (0.5, 1.05)  # 1.05 gives 99%, as 1.1 to 1.2 would
    assert scale_range({"conv": 0.95, "dense": 0.98, "head": 0.0}) == (0.5, 1.05)  # a dense layer has no say
    assert scale_range({"conv": 0.5}) == SCALE_RANGE and scale_range({}) == SCALE_RANGE
    groups = {"conv0a": "conv", "conv0b": "conv", "dense": "dense"}
    first = first_trials({"conv0b": 0.98, "dense": 0.98}, groups, ["qat", "ptq"])
    assert {trial["prune_scale"] for trial in first} == {0.95}  # one step below every layer's own ceiling
    assert [(trial["clusters_conv"], trial["clusters_dense"]) for trial in first] == list(FIRST_CLUSTERS)
    assert {trial["quantization"] for trial in first} == {"ptq"}  # the cheaper one, when allowed
    assert {trial["quantization"] for trial in first_trials({}, groups, ["qat"])} == {"qat"}
    dense_only = first_trials({"dense": 0.98}, {"dense": "dense", "head": "dense"}, ["ptq"])
    once = list(dict.fromkeys(dense for _, dense in FIRST_CLUSTERS))  # a pair that differs only in conv: once
    assert [trial["clusters_dense"] for trial in dense_only] == once
    assert all("clusters_conv" not in trial for trial in dense_only)


def test_a_trial_that_repeats_a_finished_one_is_known_by_its_parameters_and_fine_tuning_settings():
    scales = optuna.distributions.FloatDistribution(0.5, 1.05, step=0.05)
    distributions = {"prune_scale": scales, "quantization": optuna.distributions.CategoricalDistribution(["ptq"])}
    params = {"prune_scale": 0.9, "quantization": "ptq"}
    study = optuna.create_study()
    for seed in (42, 43):
        attrs = {SETTINGS_ATTR: f'{{"seed": {seed}}}', contract.VAL_ACCURACY_DROP: 0.0}
        done = optuna.trial.create_trial(params=params, distributions=distributions, value=1e4, user_attrs=attrs)
        study.add_trial(done)
    study.enqueue_trial(params)
    again = study.ask(distributions)
    again.set_user_attr(SETTINGS_ATTR, '{"seed": 43}')
    assert earlier_twin(again).number == 1
    again.set_user_attr(SETTINGS_ATTR, '{"seed": 44}')  # other fine-tuning draws: measured, not repeated
    assert earlier_twin(again) is None


def trial(number: int, size: int, drop: float) -> dict:
    return {"number": number, "run_id": f"r{number}", contract.SIZE_GZIP_BYTES: size,
            contract.VAL_ACCURACY_DROP: drop, contract.COMPRESSION_RATIO: 100_000 / size}  # fmt: skip


def test_the_choice_is_the_smallest_within_the_budget_on_validation_and_none_when_nothing_is():
    trials = [trial(0, 30_000, 0.004), trial(1, 20_000, 0.02), trial(2, 30_000, 0.0), trial(3, 25_000, 0.005)]
    assert best_trial(trials, 0.005)["number"] == 3  # the smaller over-budget trial 1 is not eligible
    assert best_trial(trials[:3], 0.005)["number"] == 2  # a tie on size goes to the smaller drop
    assert best_trial([trial(1, 20_000, 0.02)], 0.005) is None


def test_a_drop_at_the_budget_is_within_it_as_for_selection_and_nothing_within_says_what_to_change():
    at_budget = 0.1 + 0.2 - 0.2  # 0.10000000000000003: the budget, after float rounding
    assert best_trial([trial(0, 20_000, at_budget)], 0.1)["number"] == 0
    assert best_trial([trial(0, 20_000, 0.1 + 10 * BUDGET_SLACK)], 0.1) is None
    line = nothing_within([trial(0, 20_000, 0.02), trial(1, 30_000, 0.01)], SearchConfig(model_uri="m"))
    assert "no trial of 2 complete is within max_accuracy_drop=0.005" in line and "+0.0100" in line
    assert "timeout_minutes" in line and "\n" not in line


# Imported instead of tensorflow (ahead of it on PYTHONPATH): leaves a marker, so a test knows TF was reached.
TENSORFLOW_MARKER = """import os, pathlib
pathlib.Path(os.environ["RTDEPLOY_TF_MARKER"]).write_text("imported")
raise ImportError("tensorflow imported")
"""


@pytest.mark.parametrize("storage", ["notaurl", "postgresql//user:secret@db/optuna", "nosuchdb://db/optuna"])
def test_a_malformed_storage_url_is_one_line_exit_2_before_tensorflow_is_imported(storage, tmp_path):
    shadow = tmp_path / "shadow" / "tensorflow"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text(TENSORFLOW_MARKER)
    marker = tmp_path / "tensorflow-imported"
    path = os.pathsep.join([str(shadow.parent), str(PROJECT)])
    env = os.environ | {"PYTHONPATH": path, "RTDEPLOY_TF_MARKER": str(marker)}
    command = [sys.executable, "-m", "steps.search", "--model_uri", "runs:/0123/keras_model", "--storage", storage]
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    lines = result.stderr.splitlines()
    assert result.returncode == contract.EXIT_USAGE, result.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("search: error: storage="), result.stderr[-3000:]
    assert "sqlite:///" in lines[0] and "secret" not in lines[0]  # an example to follow; no password in logs
    assert not marker.exists(), "search imported tensorflow before refusing the storage URL"


STUDY = "two-processes"
BUDGET = 0.2  # generous: one fine-tuning epoch per step, first trials near the ceilings; tested: the choice


@pytest.mark.e2e
def test_two_search_processes_complete_one_study_each_trial_a_child_run_and_the_choice_within_budget(
    tmp_path_factory,
):
    folder = tmp_path_factory.mktemp("search")
    with pytest.MonkeyPatch.context() as monkeypatch, store_in(folder, monkeypatch):
        trained = mlflow_run("-e", "train", "-P", "epochs=5")
        assert trained.returncode == 0, trained.stderr[-3000:]
        (train,) = entry_point_runs("train")
        storage = f"sqlite:///{folder / 'study.db'}"
        command = [sys.executable, "-m", "mlflow", "run", str(PROJECT), "--env-manager", "local", "--experiment-name",
                   contract.EXPERIMENT, "-e", "search", "-P", f"model_uri=runs:/{train.info.run_id}/keras_model",
                   "-P", "n_trials=2", "-P", "epochs=1", "-P", f"storage={storage}", "-P", f"study_name={STUDY}",
                   "-P", f"max_accuracy_drop={BUDGET}", "-P", "register=false"]  # fmt: skip
        searches = [subprocess.Popen(command, env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True) for _ in range(2)]  # fmt: skip
        outputs = [search.communicate(timeout=900) for search in searches]
        errors = [[line for line in err.splitlines() if "Error" in line or "error" in line][-8:] for _, err in outputs]
        assert [search.returncode for search in searches] == [0, 0], errors  # the lines that say why, not TF noise

        study = optuna.load_study(study_name=STUDY, storage=storage)
        assert sorted(t.number for t in study.trials) == [0, 1, 2, 3]  # one study, numbered once across both
        parents = {run.info.run_id: run for run in entry_point_runs("search")}
        assert len(parents) == 2
        trials = f"tags.`{contract.TAG_STEP}` = '{contract.SEARCH_TRIAL}'"
        children = mlflow.search_runs(search_all_experiments=True, output_format="list", filter_string=trials)
        assert sorted(int(run.data.tags[contract.TAG_TRIAL]) for run in children) == [0, 1, 2, 3]
        assert {run.data.tags["mlflow.parentRunId"] for run in children} == set(parents)
        complete = [run for run in children if run.data.tags.get(contract.TAG_TRIAL_STATE) == "complete"]
        assert complete, "every trial was pruned"
        for run in complete:
            assert set(contract.VARIANT_METRICS) <= set(run.data.metrics), run.data.tags[contract.TAG_VARIANT]
        feasible = [run for run in complete if within_budget(run.data.metrics[contract.VAL_ACCURACY_DROP], BUDGET)]
        assert feasible, "no trial within the budget: the choice was not tested"
        smallest = min(feasible, key=lambda run: run.data.metrics[contract.SIZE_GZIP_BYTES])
        for parent in parents.values():
            chosen = parent.data.tags.get(contract.TAG_BEST_RUN)
            assert chosen is not None, f"search run {parent.info.run_id} chose nothing"
            assert chosen in {run.info.run_id for run in feasible}  # within the constraint on validation
            assert mlflow.get_run(chosen).data.metrics[contract.SIZE_GZIP_BYTES] == smallest.data.metrics[
                contract.SIZE_GZIP_BYTES]  # fmt: skip
            assert parent.data.metrics[contract.BEST_COMPRESSION_RATIO] > 1

        parent = next(iter(parents.values()))
        local = mlflow.artifacts.download_artifacts(run_id=parent.info.run_id, dst_path=str(folder / "artifacts"))
        with Image.open(f"{local}/sensitivity.png") as image:
            assert image.size[0] > 400
        logged = json.loads(Path(local, "sensitivity.json").read_text())  # mlflow.log_table's split layout
        table = [dict(zip(logged["columns"], row)) for row in logged["data"]]
        layers = {row["layer"] for row in table}
        assert layers and layers <= {"conv0a", "conv0b", "conv_head", "dense", "probabilities"}
        assert len(table) == len(layers) * len(SPARSITIES)  # one row per prunable layer and sparsity
        assert sorted({row["sparsity"] for row in table}) == list(SPARSITIES)


@pytest.mark.e2e
def test_update_replays_a_searched_champion_through_prune_cluster_and_quantize(tmp_path_factory):
    """A champion that `search` registered is a trial, not a chain of entry-point runs: update re-makes it with
    the trial's per-layer targets, as prune (layer_sparsity), cluster (layer_clusters) and quantize."""
    folder = tmp_path_factory.mktemp("searched")
    with pytest.MonkeyPatch.context() as monkeypatch, store_in(folder, monkeypatch):
        assert mlflow_run("-e", "train", "-P", "epochs=5").returncode == 0
        (train,) = entry_point_runs("train")
        searched = mlflow_run("-e", "search", "-P", f"model_uri=runs:/{train.info.run_id}/keras_model",
                              "-P", "n_trials=2", "-P", "epochs=1", "-P", "max_accuracy_drop=0.9",
                              "-P", "model_name=searched")  # fmt: skip
        assert searched.returncode == 0, searched.stderr[-3000:]
        champion = version_by_alias("searched", contract.CHAMPION)
        trial = mlflow.get_run(champion.tags[contract.VERSION_TAG_SOURCE_RUN])
        assert trial.data.tags[contract.TAG_STEP] == contract.SEARCH_TRIAL
        made = json.loads(trial.data.tags[contract.TAG_RECIPE])[-1]

        digits = load_dataset("digits")
        new = folder / "new.npz"
        np.savez(new, x_train=digits.x_val, y_train=digits.y_val, x_test=digits.x_test, y_test=digits.y_test)
        updated = mlflow_run("-e", "update", "-P", "model_name=searched", "-P", f"new_data={new}", "-P", "epochs=1")
        assert "cannot re-run" not in updated.stderr, updated.stderr[-3000:]
        (prune,) = entry_point_runs("prune")  # the trial's pruning, re-made from the updated float parent
        assert json.loads(shlex.split(prune.data.params["layer_sparsity"])[0]) == made["layer_sparsity"]
        assert json.loads(prune.data.tags[contract.TAG_RECIPE])[-1]["layer_sparsity"] == made["layer_sparsity"]
        if made["layer_clusters"]:
            (cluster,) = entry_point_runs("cluster")
            assert json.loads(shlex.split(cluster.data.params["layer_clusters"])[0]) == made["layer_clusters"]
        versions = mlflow.MlflowClient().search_model_versions("name = 'searched'")
        challenger = max(versions, key=lambda version: int(version.version))  # promoted or refused: registered
        assert int(challenger.version) == int(champion.version) + 1, updated.stderr[-3000:]
        assert challenger.tags[contract.VERSION_TAG_PARENT_VERSION] == str(champion.version)
