"""`search` end to end: two processes complete one study, each trial a child run, the choice within the budget;
`update` replays a searched champion through prune, cluster and quantize."""

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
from steps.compress.sensitivity import SPARSITIES
from steps.core.selection import Budget
from steps.datasets.data import load_dataset
from steps.release.registry import version_by_alias
from tests.support.commands import PROJECT, entry_point_runs, mlflow_run
from tests.support.stores import store_in

pytestmark = pytest.mark.e2e

STUDY = "two-processes"
BUDGET = 0.2  # accuracy and robust accuracy, generous: one epoch per step, trials near the ceilings; tested: the choice


def test_two_search_processes_complete_one_study_each_trial_a_child_run_and_the_choice_within_budget(
    tmp_path_factory,
):
    folder = tmp_path_factory.mktemp("search")
    with pytest.MonkeyPatch.context() as monkeypatch, store_in(folder, monkeypatch):
        trained = mlflow_run("-e", "train", "-P", "epochs=5")
        assert trained.returncode == 0, trained.stderr[-3000:]
        (train,) = entry_point_runs("train")
        storage = f"sqlite:///{folder / 'study.db'}"
        command = [
            sys.executable,
            "-m",
            "mlflow",
            "run",
            str(PROJECT),
            "--env-manager",
            "local",
            "--experiment-name",
            contract.EXPERIMENT,
            "-e",
            "search",
            "-P",
            f"model_uri=runs:/{train.info.run_id}/keras_model",
            "-P",
            "n_trials=2",
            "-P",
            "epochs=1",
            "-P",
            f"storage={storage}",
            "-P",
            f"study_name={STUDY}",
            "-P",
            f"max_accuracy_drop={BUDGET}",
            "-P",
            f"max_robust_accuracy_drop={BUDGET}",
            "-P",
            "register=false",
        ]
        searches = [
            subprocess.Popen(command, env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)
        ]
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
        budget = Budget(BUDGET, BUDGET)
        feasible = [run for run in complete if budget.admits(run.data.metrics)]
        assert feasible, "no trial within the budget: the choice was not tested"
        smallest = min(feasible, key=lambda run: run.data.metrics[contract.SIZE_GZIP_BYTES])
        for parent in parents.values():
            chosen = parent.data.tags.get(contract.TAG_BEST_RUN)
            assert chosen is not None, f"search run {parent.info.run_id} chose nothing"
            assert chosen in {run.info.run_id for run in feasible}  # within the constraint on validation
            assert (
                mlflow.get_run(chosen).data.metrics[contract.SIZE_GZIP_BYTES]
                == smallest.data.metrics[contract.SIZE_GZIP_BYTES]
            )
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


def test_update_replays_a_searched_champion_through_prune_cluster_and_quantize(tmp_path_factory):
    """A champion that `search` registered is a trial, not a chain of entry-point runs: update re-makes it with
    the trial's per-layer targets, as prune (layer_sparsity), cluster (layer_clusters) and quantize."""
    folder = tmp_path_factory.mktemp("searched")
    with pytest.MonkeyPatch.context() as monkeypatch, store_in(folder, monkeypatch):
        assert mlflow_run("-e", "train", "-P", "epochs=5").returncode == 0
        (train,) = entry_point_runs("train")
        searched = mlflow_run(
            "-e",
            "search",
            "-P",
            f"model_uri=runs:/{train.info.run_id}/keras_model",
            "-P",
            "n_trials=2",
            "-P",
            "epochs=1",
            "-P",
            "max_accuracy_drop=0.9",
            "-P",
            "max_robust_accuracy_drop=0.9",
            "-P",
            "model_name=searched",
        )
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
