"""Every MLproject entry point and every bench/ and docs/ script imports and parses its arguments (`--help`): the
scripts run outside the suite's other tests, so a moved module or a renamed function would otherwise go unnoticed
until someone measures again."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import yaml

from tests.support.commands import PROJECT

pytestmark = pytest.mark.e2e

SCRIPTS = sorted(
    path.relative_to(PROJECT)
    for folder in ("bench", "docs")
    for path in (PROJECT / folder).glob("*.py")
    if "def main" in path.read_text()
)


ENTRY_POINTS = yaml.safe_load((PROJECT / "MLproject").read_text())["entry_points"]


@pytest.mark.parametrize("name", sorted(ENTRY_POINTS))
def test_every_entry_point_runs_its_help_naming_each_of_its_mlproject_parameters(name):
    """`python -m steps.<module> --help`, as MLproject runs it, offers every parameter MLproject passes."""
    module = ENTRY_POINTS[name]["command"].split("python -m ")[1].split()[0]
    result = subprocess.run(
        [sys.executable, "-m", module, "--help"], cwd=PROJECT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and result.stdout.startswith("usage:"), result.stderr[-2000:]
    offered = set(re.findall(r"--(\w+)", result.stdout))
    assert set(ENTRY_POINTS[name].get("parameters", {})) <= offered


@pytest.mark.parametrize("script", SCRIPTS, ids=str)
def test_every_bench_and_docs_script_runs_its_help(script):
    """They are outside the suite's other tests: at least each imports and parses its arguments."""
    result = subprocess.run(
        [sys.executable, str(script), "--help"], cwd=PROJECT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and "usage:" in result.stdout, result.stderr[-2000:]
