"""Modules import what they need and no more (pure -> numpy -> tensorflow -> MLflow edges -> stages ->
pipeline): moving two aliases loads no tensorflow, no entry point loads it when imported, and a data set
that cannot be used fails before tensorflow is imported. One fresh interpreter answers all three."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from PIL import Image

from tests.support.commands import run_command

NO_TENSORFLOW = (
    "steps.release.registry",
    "steps.promote",
    "steps.rollback",
    "steps.register",
    "steps.pipeline",
    "steps.monitor",
    "steps.simulate",
    "steps.update",
    "steps.autopilot",
)
TENSORFLOW_LATER = ("steps.train", "steps.prune", "steps.cluster", "steps.quantize", "steps.evaluate")
PROBE = """
import importlib, json, sys
def heavy():
    return sorted(name for name in ("tensorflow", "tf_keras") if name in sys.modules)
report = {}
import steps.release.registry, steps.promote, steps.rollback  # the issue's check, first, in a clean interpreter
report["alias commands"] = heavy()
report["entry points"] = {}
for name in sys.argv[2].split(","):
    importlib.import_module(name)
    report["entry points"][name] = heavy()
from steps.train import main
try:
    main(["--dataset", sys.argv[1]])
except ValueError as error:
    report["bad data"] = {"error": str(error), "heavy": heavy()}
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def fresh_interpreter(tmp_path_factory) -> dict:
    one_class = tmp_path_factory.mktemp("one-class") / "images"
    (one_class / "only").mkdir(parents=True)
    for i in range(12):
        Image.fromarray(np.full((8, 8), i * 20, np.uint8)).save(one_class / "only" / f"{i}.png")
    modules = ",".join(NO_TENSORFLOW + TENSORFLOW_LATER)
    result = run_command([sys.executable, "-c", PROBE, str(one_class), modules])
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_moving_aliases_loads_no_tensorflow(fresh_interpreter):
    assert fresh_interpreter["alias commands"] == []


def test_no_entry_point_imports_tensorflow_when_loaded(fresh_interpreter):
    assert fresh_interpreter["entry points"] == {name: [] for name in NO_TENSORFLOW + TENSORFLOW_LATER}


def test_a_one_class_image_folder_fails_before_tensorflow_is_imported(fresh_interpreter):
    assert "at least two classes" in fresh_interpreter["bad data"]["error"]
    assert fresh_interpreter["bad data"]["heavy"] == []


RUN_WITHOUT_TENSORFLOW = """
import runpy, sys
module = sys.argv[1]
sys.argv = [module, *sys.argv[2:]]
try:
    runpy.run_module(f"steps.{module}", run_name="__main__", alter_sys=True)
finally:
    print("tensorflow loaded:", "tensorflow" in sys.modules or "tf_keras" in sys.modules, flush=True)
"""


@pytest.mark.e2e
def test_promote_and_rollback_run_through_the_gate_without_loading_tensorflow(tracking, tmp_path):
    """Not only imported: promote predicts the test split with both LiteRT deployables and moves the aliases."""
    import mlflow

    from steps import contract
    from steps.datasets.data import load_dataset
    from steps.release.registry import register_deployable
    from steps.release.tracking import log_litert_model
    from tests.support.serving import tiny_tflite

    digits = load_dataset("digits")
    for number in (1, 2):  # two deployables, each its own run, registered by rtdeploy's own function
        with mlflow.start_run() as run:
            path = tmp_path / f"model{number}.tflite"
            path.write_bytes(tiny_tflite(digits.input_shape, digits.n_classes))
            log_litert_model(path, digits)
            mlflow.log_metrics({contract.ACCURACY: 0.1, contract.SIZE_GZIP_BYTES: path.stat().st_size})
        register_deployable("layered", run.info.run_id)
    steps = [
        ("promote", "--model_name", "layered", "--version", "1", "--min_accuracy", "0"),
        ("promote", "--model_name", "layered", "--version", "2", "--min_accuracy", "0", "--min_accuracy_change", "1"),
        ("rollback", "--model_name", "layered"),
    ]
    for step in steps:
        result = run_command([sys.executable, "-c", RUN_WITHOUT_TENSORFLOW, *step])
        assert result.returncode == 0, result.stderr[-3000:]
        assert "tensorflow loaded: False" in result.stdout, step
    aliases = {
        alias: str(version) for alias, version in mlflow.MlflowClient().get_registered_model("layered").aliases.items()
    }
    assert (aliases[contract.CHAMPION], aliases[contract.PREVIOUS]) == ("1", "2")
