"""`evaluate` on a Keras and on a LiteRT model URI: the same report for both, with figures that open."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
from PIL import Image

from steps import contract
from steps.evaluate import analyse_predictions
from tests.support.commands import entry_point_runs, mlflow_run

FIGURES = ("confusion_matrix.png", "error_rate_per_class.png", "top_confusions.png")


def test_analysis_counts_errors_per_class_and_the_most_frequent_confusions():
    truth = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    predicted = np.array([0, 1, 1, 1, 1, 2, 0, 2])
    report = analyse_predictions(predicted, truth, ("a", "b", "c"), top=2, examples=5)
    assert report.accuracy.value == pytest.approx(5 / 8) and report.accuracy.low < 5 / 8 < report.accuracy.high
    assert report.confusion.tolist() == [[1, 2, 0], [0, 2, 0], [1, 0, 2]]
    per_class = report.per_class.set_index("class")
    assert per_class.loc["a", "error_rate"] == pytest.approx(2 / 3)
    assert per_class.loc["b", "precision"] == pytest.approx(0.5) and per_class.loc["b", "recall"] == 1.0
    first = report.top_confusions.iloc[0]
    assert (first["true"], first["predicted"], first["count"], first["examples"]) == ("a", "b", 2, [1, 2])
    assert first["share_of_errors"] == pytest.approx(2 / 3)


@pytest.mark.e2e
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
    for key in (contract.MACRO_F1, contract.THROUGHPUT, contract.PEAK_RSS_MB, contract.LATENCY_P99_MS,
                contract.SIZE_GZIP_BYTES):  # fmt: skip
        assert metrics[key] > 0, key
    assert "accuracy_score" in metrics  # mlflow.models.evaluate ran on the same predictions
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
