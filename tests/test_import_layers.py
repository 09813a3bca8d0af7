"""Modules import what they need and no more: moving two aliases loads no tensorflow, no entry point loads it when
imported, and a data set that cannot be used fails before tensorflow is imported. One fresh interpreter
answers all three."""

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
