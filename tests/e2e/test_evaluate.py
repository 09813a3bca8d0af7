"""`evaluate` on a Keras and a LiteRT model of `main`: the report's metrics and figures."""

from __future__ import annotations

import mlflow
import pytest
from PIL import Image

from steps import contract
from tests.support.commands import entry_point_runs, mlflow_run

pytestmark = pytest.mark.e2e

FIGURES = (
    "confusion_matrix.png",
    "error_rate_per_class.png",
    "top_confusions.png",
    "robustness.png",
    "worst_errors_explained.png",
)


@pytest.mark.parametrize("model", [contract.KERAS_MODEL, contract.LITERT_MODEL])
def test_evaluate_reports_on_keras_and_litert_models(first_main, model, tmp_path):
    _, train = first_main
    uri = f"runs:/{train.info.run_id}/{model}"
    result = mlflow_run("-e", "evaluate", "-P", f"model_uri={uri}", "-P", "latency_runs=30")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"evaluate: {uri}" in result.stdout and "confused" in result.stdout
    run = entry_point_runs("evaluate")[-1]
    metrics = run.data.metrics
    assert metrics[contract.ACCURACY] == pytest.approx(train.data.metrics[contract.KERAS_ACCURACY], abs=0.006)
    assert metrics[contract.ACCURACY_LOW] < metrics[contract.ACCURACY] <= metrics[contract.ACCURACY_HIGH]
    for key in (
        contract.MACRO_F1,
        contract.THROUGHPUT,
        contract.PEAK_RSS_MB,
        contract.LATENCY_P99_MS,
        contract.SIZE_GZIP_BYTES,
    ):
        assert metrics[key] > 0, key
    threaded = contract.latency_p50_ms_threads(2)  # the default threads: LiteRT has them, a Keras model does not
    assert (threaded in metrics) == (model == contract.LITERT_MODEL)
    assert metrics.get(threaded, 1.0) > 0
    assert "accuracy_score" in metrics  # mlflow.models.evaluate ran on the same predictions
    # The corruption suite on the test split: the same corrupted images train measured its deployable on.
    assert metrics[contract.ROBUST_ACCURACY] == pytest.approx(train.data.metrics[contract.ROBUST_ACCURACY], abs=0.01)
    assert "robust accuracy" in result.stdout
    local = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path=contract.EVALUATION_FOLDER, dst_path=str(tmp_path)
    )
    for name in FIGURES:
        with Image.open(f"{local}/{name}") as image:
            assert image.format == "PNG" and image.width > 200
    per_class = mlflow.MlflowClient().load_table(
        run.info.experiment_id, f"{contract.EVALUATION_FOLDER}/per_class.json", [run.info.run_id]
    )
    assert len(per_class) == 10 and {"precision", "recall", "f1", "error_rate"} <= set(per_class.columns)
    robustness = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/evaluation/{contract.ROBUSTNESS_FILE}")
    assert set(robustness["test"]["kinds"]) == set(contract.ROBUSTNESS_KINDS)
