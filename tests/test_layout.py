"""The tree shows the architecture: the entry points (and the public interface) at the top of steps/, library
code in subpackages by concern, no entry point imported by another module, one name for one thing, tests
mirroring the code with the end-to-end ones apart, one formatting. (bench/ and docs/ scripts: e2e/test_scripts.py.)"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections import Counter

import yaml

from tests.support.commands import PROJECT

STEPS = PROJECT / "steps"
PUBLIC_INTERFACE = {"__init__", "contract", "parameters", "settings"}  # beside the entry points at the top
GENERATED = "_pb2"  # the gRPC stubs scripts/generate-oip-stubs.sh writes
FORMAT_SKIP = "fmt: " + "skip"  # spelled in two parts so that this file does not count itself


def entry_points() -> set[str]:
    """The modules MLproject runs: `python -m steps.<name>`."""
    commands = [
        spec["command"] for spec in yaml.safe_load((PROJECT / "MLproject").read_text())["entry_points"].values()
    ]
    return {name for command in commands for name in re.findall(r"python -m steps\.(\w+)", command)}


SOURCE_FOLDERS = ("steps", "tests", "bench", "docs", "scripts")
E2E_MARK = re.compile(r"^pytestmark = \[?pytest\.mark\.e2e|^@pytest\.mark\.e2e", re.MULTILINE)


def modules() -> list:
    return [path for path in STEPS.rglob("*.py") if GENERATED not in path.name]


def packages() -> set[str]:
    return {path.parent.name for path in STEPS.glob("*/__init__.py")}


def test_the_top_of_steps_is_the_entry_points_and_the_public_interface():
    """Every entry point is a module at the top, but `serve`, the server's package (`python -m steps.serve`)."""
    top = {path.stem for path in STEPS.glob("*.py")}
    assert entry_points() & packages() == {"serve"}
    assert top == (entry_points() - packages()) | PUBLIC_INTERFACE
    assert len(top) <= 20


def test_no_module_imports_an_entry_point():
    """An entry point is a leaf: what two stages share lives in the library (serve/ is a package of its own)."""
    leaves = {f"steps.{name}" for name in entry_points() - packages()}
    importers = {}
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
            elif isinstance(node, ast.Import):
                names = {alias.name for alias in node.names}
            else:
                continue
            for name in names & leaves:
                importers.setdefault(name, []).append(str(path.relative_to(PROJECT)))
    assert importers == {}


def test_no_two_modules_or_classes_under_steps_share_a_name():
    module_names = Counter(path.stem for path in modules() if path.stem != "__init__")
    assert [name for name, count in module_names.items() if count > 1] == []
    classes = Counter(
        node.name
        for path in modules()
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ClassDef)
    )
    assert [name for name, count in classes.items() if count > 1] == []


def test_end_to_end_tests_are_in_tests_e2e_and_only_there():
    for path in (PROJECT / "tests").rglob("test_*.py"):
        marked = E2E_MARK.search(path.read_text())
        if path.parent.name == "e2e":
            assert marked, f"{path} lacks `pytestmark = pytest.mark.e2e`"
        else:
            assert not marked, f"{path} is end-to-end: move it to tests/e2e/"


def test_unit_tests_sit_in_the_folder_of_the_package_they_test():
    """tests/<package>/ mirrors steps/<package>/; the top-level tests are the entry points' and the project's."""
    folders = {path.name for path in (PROJECT / "tests").iterdir() if path.is_dir() and path.name != "__pycache__"}
    assert folders - packages() == {"e2e", "support"}


def test_no_formatting_is_skipped_and_the_code_is_formatted():
    skipped = [
        str(path)
        for folder in SOURCE_FOLDERS
        for path in (PROJECT / folder).rglob("*.py")
        if GENERATED not in path.name and FORMAT_SKIP in path.read_text()
    ]
    assert skipped == []
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", "steps", "tests", "bench", "docs"],
        cwd=PROJECT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout
