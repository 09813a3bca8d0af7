"""`search`'s choices: the scale range and the first trials, a repeated trial known by its settings, the smallest
trial within the budget (as selection defines it), and a malformed storage URL refused before tensorflow."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from steps import contract
from steps.core.selection import BUDGET_SLACK, Budget
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
from tests.support.commands import PROJECT


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
    return {
        "number": number,
        "run_id": f"r{number}",
        contract.SIZE_GZIP_BYTES: size,
        contract.VAL_ACCURACY_DROP: drop,
        contract.COMPRESSION_RATIO: 100_000 / size,
    }


def test_the_choice_is_the_smallest_within_the_budget_on_validation_and_none_when_nothing_is():
    trials = [trial(0, 30_000, 0.004), trial(1, 20_000, 0.02), trial(2, 30_000, 0.0), trial(3, 25_000, 0.005)]
    assert best_trial(trials, Budget(0.005, 0.02))["number"] == 3  # the smaller over-budget trial 1 is not eligible
    assert best_trial(trials[:3], Budget(0.005, 0.02))["number"] == 2  # a tie on size goes to the smaller drop
    assert best_trial([trial(1, 20_000, 0.02)], Budget(0.005, 0.02)) is None


def test_a_drop_at_the_budget_is_within_it_as_for_selection_and_nothing_within_says_what_to_change():
    at_budget = 0.1 + 0.2 - 0.2  # 0.10000000000000003: the budget, after float rounding
    assert best_trial([trial(0, 20_000, at_budget)], Budget(0.1, 0.02))["number"] == 0
    assert best_trial([trial(0, 20_000, 0.1 + 10 * BUDGET_SLACK)], Budget(0.1, 0.02)) is None
    line = nothing_within([trial(0, 20_000, 0.02), trial(1, 30_000, 0.01)], SearchConfig(model_uri="m"))
    assert "no trial of 2 complete is within max_accuracy_drop=0.005, max_robust_accuracy_drop=0.02" in line
    assert "val_accuracy_drop +0.0100 > 0.005" in line
    assert "timeout_minutes" in line and "\n" not in line


# Imported instead of tensorflow (ahead of it on PYTHONPATH): leaves a marker, so a test knows TF was reached.
TENSORFLOW_MARKER = """import os, pathlib
pathlib.Path(os.environ["RTDEPLOY_TF_MARKER"]).write_text("imported")
raise ImportError("tensorflow imported")
"""


MALFORMED_STORAGE = ("notaurl", "postgresql//user:secret@db/optuna", "nosuchdb://db/optuna")


@pytest.fixture(scope="module")
def refusals(tmp_path_factory) -> dict[str, tuple[subprocess.CompletedProcess, Path]]:
    """`search --storage <url>` for each malformed URL, the processes started together (each spends its
    seconds importing mlflow): its result, and the marker a tensorflow import would leave."""
    started = {}
    for index, storage in enumerate(MALFORMED_STORAGE):
        folder = tmp_path_factory.mktemp(f"storage{index}")
        shadow = folder / "shadow" / "tensorflow"
        shadow.mkdir(parents=True)
        (shadow / "__init__.py").write_text(TENSORFLOW_MARKER)
        marker = folder / "tensorflow-imported"
        path = os.pathsep.join([str(shadow.parent), str(PROJECT)])
        env = os.environ | {"PYTHONPATH": path, "RTDEPLOY_TF_MARKER": str(marker)}
        command = [sys.executable, "-m", "steps.search", "--model_uri", "runs:/0123/keras_model", "--storage", storage]
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=folder
        )
        started[storage] = process, command, marker
    found = {}
    for storage, (process, command, marker) in started.items():
        stdout, stderr = process.communicate(timeout=120)
        found[storage] = subprocess.CompletedProcess(command, process.returncode, stdout, stderr), marker
    return found


@pytest.mark.parametrize("storage", MALFORMED_STORAGE)
def test_a_malformed_storage_url_is_one_line_exit_2_before_tensorflow_is_imported(storage, refusals):
    result, marker = refusals[storage]
    lines = result.stderr.splitlines()
    assert result.returncode == contract.EXIT_USAGE, result.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("search: error: storage="), result.stderr[-3000:]
    assert "sqlite:///" in lines[0] and "secret" not in lines[0]  # an example to follow; no password in logs
    assert not marker.exists(), "search imported tensorflow before refusing the storage URL"
