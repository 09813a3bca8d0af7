"""Every bench/ and docs/ script imports and parses its arguments (`--help`): they run outside the suite's other
tests, so a moved module or a renamed function would otherwise go unnoticed until someone measures again."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.commands import PROJECT

pytestmark = pytest.mark.e2e

SCRIPTS = sorted(
    path.relative_to(PROJECT)
    for folder in ("bench", "docs")
    for path in (PROJECT / folder).glob("*.py")
    if "def main" in path.read_text()
)


@pytest.mark.parametrize("script", SCRIPTS, ids=str)
def test_every_bench_and_docs_script_runs_its_help(script):
    """They are outside the suite's other tests: at least each imports and parses its arguments."""
    result = subprocess.run(
        [sys.executable, str(script), "--help"], cwd=PROJECT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and "usage:" in result.stdout, result.stderr[-2000:]
