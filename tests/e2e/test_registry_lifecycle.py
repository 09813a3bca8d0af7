"""The registry after `mlflow run .`: the smallest variant within budget is champion, a degraded challenger
is refused by the gate, `promote force=true` and `rollback` move the aliases, and every version leads back
to its float baseline."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pytest

from steps import contract
from steps.datasets.data import load_dataset
from steps.release.lineage import lineage
from tests.support.commands import entry_point_runs, mlflow_run

pytestmark = pytest.mark.e2e
MODEL = "digits-classifier"


def alias(name: str) -> str:
    return mlflow.MlflowClient().get_model_version_by_alias(MODEL, name).version


def version_tags(version: str) -> dict[str, str]:
    return mlflow.MlflowClient().get_model_version(MODEL, version).tags


def test_main_makes_the_smallest_variant_within_budget_the_champion(first_main):
    main, _ = first_main
    champion = mlflow.MlflowClient().get_model_version_by_alias(MODEL, contract.CHAMPION)
    assert champion.tags[contract.VERSION_TAG_VARIANT] == main.data.tags[contract.TAG_BEST_VARIANT]
    assert champion.tags[contract.VERSION_TAG_VALIDATION_STATUS] == contract.VALIDATION_PASSED
    assert alias(contract.CHALLENGER) == champion.version
    source = mlflow.get_run(champion.tags[contract.VERSION_TAG_SOURCE_RUN])
    assert champion.tags[contract.VERSION_TAG_DATASET_DIGEST] == source.data.tags[contract.TAG_DATASET_DIGEST]
    # The README's way to load what is served:
    served = mlflow.pyfunc.load_model(f"models:/{MODEL}@{contract.CHAMPION}")
    data = load_dataset("digits")
    accuracy = float((np.asarray(served.predict(data.x_test)).argmax(axis=1) == data.y_test).mean())
    assert accuracy == pytest.approx(float(champion.tags[contract.VERSION_TAG_ACCURACY]))
    for tag, metric in (
        (contract.VERSION_TAG_ROBUST_ACCURACY, contract.ROBUST_ACCURACY),
        (contract.VERSION_TAG_FLIP_RATE, contract.FLIP_RATE),
    ):
        assert float(champion.tags[tag]) == pytest.approx(source.data.metrics[metric])


def test_a_version_leads_back_to_its_float_baseline_with_its_recipe(first_main):
    _, train = first_main
    chain = lineage(MODEL, alias(contract.CHAMPION))
    assert chain[-1].run_id == train.info.run_id and chain[-1].step == "train"
    recipe = json.loads(version_tags(alias(contract.CHAMPION))[contract.VERSION_TAG_RECIPE])
    assert [step["step"] for step in recipe] == [link.step for link in reversed(chain[:-1])]
    assert all(link.params for link in chain)  # each step's settings, to re-apply the recipe


def test_degraded_challenger_is_refused_then_forced_then_rolled_back(first_main):
    champion = alias(contract.CHAMPION)

    degraded = mlflow_run("-P", "epochs=1", "-P", "variants=float16,int8")  # trained for one epoch
    output = degraded.stdout + degraded.stderr
    assert degraded.returncode != 0, "main must fail when the gate refuses the challenger"
    assert "not promoted" in output and "accuracy_change_vs_champion" in output
    challenger = alias(contract.CHALLENGER)
    assert challenger != champion and alias(contract.CHAMPION) == champion
    tags = version_tags(challenger)
    assert tags[contract.VERSION_TAG_VALIDATION_STATUS] == contract.VALIDATION_FAILED
    assert "champion accuracy" in tags[contract.VERSION_TAG_VALIDATION_REASON]
    register_run = entry_point_runs("register")[-1]
    assert register_run.info.status == "FAILED"
    metrics = register_run.data.metrics
    assert metrics[contract.CHALLENGER_ACCURACY] < metrics[contract.CHAMPION_ACCURACY]
    assert 0 < metrics[contract.MCNEMAR_P_VALUE] <= 1  # recorded beside the tolerance, on the run and the version
    # Robustness compared on the very corrupted images each variant was measured on: the champion's figure is its own
    champion_run = mlflow.get_run(version_tags(champion)[contract.VERSION_TAG_SOURCE_RUN])
    assert metrics[contract.CHAMPION_ROBUST_ACCURACY] == pytest.approx(
        champion_run.data.metrics[contract.ROBUST_ACCURACY]
    )
    assert (
        contract.ROBUST_ACCURACY_CHANGE in metrics and "robust accuracy" in tags[contract.VERSION_TAG_VALIDATION_REASON]
    )
    assert register_run.data.tags[contract.VERSION_TAG_VALIDATION_STATUS] == contract.VALIDATION_FAILED
    assert float(tags[contract.VERSION_TAG_MCNEMAR_P_VALUE]) == pytest.approx(
        metrics[contract.MCNEMAR_P_VALUE], rel=1e-5
    )

    refused = mlflow_run("-e", "promote", "-P", f"version={challenger}")
    assert refused.returncode != 0 and "force=true skips the gate" in refused.stderr
    assert alias(contract.CHAMPION) == champion

    forced = mlflow_run("-e", "promote", "-P", f"version={challenger}", "-P", "force=true")
    assert forced.returncode == 0, forced.stderr[-2000:]
    assert alias(contract.CHAMPION) == challenger and alias(contract.PREVIOUS) == champion
    assert version_tags(challenger)[contract.VERSION_TAG_VALIDATION_STATUS] == contract.VALIDATION_FORCED
    promote_again = mlflow_run("-e", "promote", "-P", f"version={challenger}")  # already champion: nothing to do
    assert promote_again.returncode == 0, promote_again.stderr[-2000:]
    promote_run = entry_point_runs("promote")[-1]
    assert promote_run.data.tags[contract.VERSION_TAG_VALIDATION_STATUS] == contract.VALIDATION_UNCHANGED
    assert version_tags(challenger)[contract.VERSION_TAG_VALIDATION_STATUS] == contract.VALIDATION_FORCED
    assert entry_point_runs("promote")[-2].data.tags[contract.TAG_FORCED] == "true"

    rolled = mlflow_run("-e", "rollback")
    assert rolled.returncode == 0, rolled.stderr[-2000:]
    assert alias(contract.CHAMPION) == champion and alias(contract.PREVIOUS) == challenger


def test_promote_of_a_missing_version_names_it(first_main):
    result = mlflow_run("-e", "promote", "-P", "version=999")
    assert result.returncode != 0 and "has no version 999" in result.stderr
