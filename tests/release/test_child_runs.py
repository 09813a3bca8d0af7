"""Child runs start from the checkout, whatever folder the parent step was started in."""

from __future__ import annotations

from steps.release.child_runs import project_dir
from tests.support.commands import PROJECT


def test_the_project_is_the_checkout_holding_mlproject_from_any_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no MLproject here
    project_dir.cache_clear()
    try:
        assert project_dir() == PROJECT.resolve()
    finally:
        project_dir.cache_clear()
