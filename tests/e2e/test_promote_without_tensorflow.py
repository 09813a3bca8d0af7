"""promote and rollback run (not only imported) through the gate, in fresh interpreters, without tensorflow."""

from __future__ import annotations

import sys

import pytest

from tests.support.commands import run_command

pytestmark = pytest.mark.e2e

RUN_WITHOUT_TENSORFLOW = """
import runpy, sys
module = sys.argv[1]
sys.argv = [module, *sys.argv[2:]]
try:
    runpy.run_module(f"steps.{module}", run_name="__main__", alter_sys=True)
finally:
    print("tensorflow loaded:", "tensorflow" in sys.modules or "tf_keras" in sys.modules, flush=True)
"""


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
