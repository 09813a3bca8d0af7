"""`evaluate` entry point: a full report on any model URI (Keras or LiteRT) on a data set's test split.

Accuracy with its 95% interval, per-class precision/recall/F1 and the
confusion matrix (scikit-learn), error types (error rate per true class) and
error causes (the most frequent true -> predicted confusions, with example
images), accuracy under the corruption suite (per kind and level, with a
figure), single-sample latency and batch throughput, peak memory of loading
and predicting (measured by `steps.modeling.profile` in a fresh child process, so this
process's imports do not count), size and gzip size.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable

import mlflow
import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from steps import contract
from steps.core.stats import Accuracy, accuracy
from steps.datasets.data import Dataset, load_dataset
from steps.modeling.explain import Explanation, occlusion_map
from steps.modeling.measure import sizes
from steps.modeling.pyfunc import probability_function
from steps.modeling.robustness import Robustness, measure_robustness
from steps.parameters import parse_config, run_cli
from steps.release.lineage import baseline_of, check_model_reference, source_run_id, variant_of
from steps.release.tracking import log_config, log_dataset, set_variant_tags, step_run
from steps.reports.figures import (
    confusion_examples_figure,
    confusion_matrix_figure,
    error_rate_figure,
    explained_errors_figure,
    robustness_figure,
)
from steps.settings import EvaluateConfig

BATCH_SIZE = 32  # throughput is measured on batches of this size
PROFILE_SAMPLES = 64  # test images handed to the profiling process
PROFILE_TIMEOUT_SECONDS = 900
Explainer = Callable[[np.ndarray], Explanation]  # one image -> its map


@dataclass(frozen=True)
class ExplainedError:
    """A test sample the model got wrong, with what it looked at, beside what the float baseline looked at."""

    index: int  # in the test split
    explanation: Explanation  # the evaluated model's, for the class it predicted
    baseline: Explanation | None  # the float baseline deployable's, for the class it predicted (None: no baseline)


@dataclass
class Evaluation:
    """What the predictions say about the model; pure numbers, no I/O."""

    accuracy: Accuracy
    per_class: pd.DataFrame  # class, precision, recall, f1, support, error_rate
    confusion: np.ndarray  # [true, predicted] counts
    top_confusions: pd.DataFrame  # true, predicted, count, share_of_errors, examples (test indices)
    robustness: Robustness | None = None  # on the test split; None when robustness=off
    explained_errors: list[ExplainedError] = field(default_factory=list)  # the most confident mistakes, explained

    @property
    def metrics(self) -> dict[str, float]:
        metrics = {
            contract.ACCURACY: self.accuracy.value,
            contract.ACCURACY_LOW: self.accuracy.low,
            contract.ACCURACY_HIGH: self.accuracy.high,
            contract.ERROR_RATE: 1.0 - self.accuracy.value,
            contract.MACRO_F1: float(self.per_class["f1"].mean()),
        }
        if self.robustness is not None:
            metrics[contract.ROBUST_ACCURACY] = self.robustness.mean
            for kind in self.robustness.accuracy:
                metrics[contract.robust_accuracy_of(kind)] = self.robustness.of_kind(kind)
        return metrics


def analyse_predictions(
    predicted: np.ndarray, truth: np.ndarray, class_names: tuple[str, ...], top: int = 5, examples: int = 4
) -> Evaluation:
    """Accuracy, per-class table, confusion matrix and the most frequent confusions."""
    labels = np.arange(len(class_names))
    confusion = confusion_matrix(truth, predicted, labels=labels)
    precision, recall, f1, support = precision_recall_fscore_support(truth, predicted, labels=labels, zero_division=0)
    per_class = pd.DataFrame(
        {
            "class": list(class_names),
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "support": support,
            "error_rate": np.where(support > 0, 1.0 - recall, 0.0),
        }
    )
    top_confusions = _top_confusions(confusion, predicted, truth, class_names, top, examples)
    return Evaluation(accuracy(predicted, truth), per_class, confusion, top_confusions)


def _top_confusions(confusion, predicted, truth, class_names, top: int, examples: int) -> pd.DataFrame:
    """The most frequent true -> predicted pairs, with their share of all errors and a few test indices each."""
    off_diagonal = confusion.copy()
    np.fill_diagonal(off_diagonal, 0)
    errors = int(off_diagonal.sum())
    pairs = sorted(((off_diagonal[t, p], t, p) for t, p in zip(*np.nonzero(off_diagonal))), reverse=True)
    rows = [
        {
            "true": class_names[t],
            "predicted": class_names[p],
            "count": int(count),
            "share_of_errors": count / errors,
            "examples": np.flatnonzero((truth == t) & (predicted == p))[:examples].tolist(),
        }
        for count, t, p in pairs[:top]
    ]
    return pd.DataFrame(rows, columns=["true", "predicted", "count", "share_of_errors", "examples"])


def profile_in_child(model_uri: str, x: np.ndarray, latency_runs: int, threads: int = 1) -> dict[str, float]:
    """`python -m steps.modeling.profile` on the model: latency, throughput and peak memory of that process alone."""
    with tempfile.TemporaryDirectory() as folder:
        sample_path = Path(folder) / "sample.npy"
        np.save(sample_path, x[:PROFILE_SAMPLES].astype(np.float32))
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "steps.modeling.profile",
                model_uri,
                str(sample_path),
                str(latency_runs),
                str(BATCH_SIZE),
                str(threads),
            ],
            capture_output=True,
            text=True,
            timeout=PROFILE_TIMEOUT_SECONDS,
        )
    if result.returncode != 0:
        raise RuntimeError(f"profiling {model_uri} in a child process failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def model_sizes(local: Path) -> dict[str, float]:
    """Bytes of a downloaded model's payload (.tflite file, or the Keras model's files) raw and gzipped."""
    tflite = sorted(local.rglob("*.tflite"))
    if tflite:
        payload = tflite[0].read_bytes()
    else:  # a Keras model: a deterministic tar of its files
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for path in sorted(p for p in local.rglob("*") if p.is_file()):
                info = tar.gettarinfo(str(path), arcname=str(path.relative_to(local)))
                info.mtime = 0
                with path.open("rb") as file:
                    tar.addfile(info, file)
        payload = buffer.getvalue()
    size, gzip_size = sizes(payload)
    return {contract.SIZE_BYTES: size, contract.SIZE_GZIP_BYTES: gzip_size}


def log_report(evaluation: Evaluation, data: Dataset, predicted: np.ndarray) -> None:
    """Tables and figures of the evaluation on the active run, under evaluation/."""
    folder = contract.EVALUATION_FOLDER
    mlflow.log_table(evaluation.per_class, f"{folder}/per_class.json")
    confusion = pd.DataFrame(evaluation.confusion, columns=[f"predicted {c}" for c in data.class_names])
    confusion.insert(0, "true", list(data.class_names))
    mlflow.log_table(confusion, f"{folder}/confusion_matrix.json")
    top = evaluation.top_confusions.assign(examples=lambda t: t["examples"].map(str))
    mlflow.log_table(top, f"{folder}/top_confusions.json")
    figures = {
        "confusion_matrix.png": confusion_matrix_figure(evaluation.confusion, data.class_names),
        "error_rate_per_class.png": error_rate_figure(evaluation.per_class),
    }
    if len(evaluation.top_confusions):
        figures["top_confusions.png"] = confusion_examples_figure(evaluation.top_confusions, data.x_test)
    if evaluation.robustness is not None:
        mlflow.log_dict({"test": evaluation.robustness.as_dict()}, f"{folder}/{contract.ROBUSTNESS_FILE}")
        figures["robustness.png"] = robustness_figure(evaluation.robustness, evaluation.accuracy.value)
    if evaluation.explained_errors:
        errors = evaluation.explained_errors
        figures["worst_errors_explained.png"] = explained_errors_figure(
            data.x_test[[error.index for error in errors]],
            [f"#{error.index}: true {data.class_names[data.y_test[error.index]]}" for error in errors],
            data.class_names,
            [error.explanation for error in errors],
            [error.baseline for error in errors],
        )
    for name, figure in figures.items():
        mlflow.log_figure(figure, f"{folder}/{name}")
    # MLflow's own classifier evaluation on the same predictions, for its standard metrics and plots.
    frame = pd.DataFrame({"label": data.y_test, "prediction": predicted})
    mlflow.models.evaluate(data=frame, predictions="prediction", targets="label", model_type="classifier")


def summary(model_uri: str, metrics: dict[str, float], evaluation: Evaluation, threads: int = 1) -> str:
    worst = evaluation.per_class.sort_values("error_rate", ascending=False).iloc[0]
    lines = [
        f"evaluate: {model_uri}",
        f"  accuracy {evaluation.accuracy}, macro F1 {metrics[contract.MACRO_F1]:.4f}; "
        f"worst class {worst['class']} ({worst['error_rate']:.1%} wrong)",
        f"  latency p50 {metrics[contract.LATENCY_P50_MS]:.3f} ms, p99 {metrics[contract.LATENCY_P99_MS]:.3f} ms; "
        f"batch-{BATCH_SIZE} throughput {metrics[contract.THROUGHPUT]:,.0f}/s; "
        f"peak RSS {metrics[contract.PEAK_RSS_MB]:.0f} MB",
        f"  size {int(metrics[contract.SIZE_BYTES]):,} B ({int(metrics[contract.SIZE_GZIP_BYTES]):,} B gzipped)",
    ]
    threaded = contract.latency_p50_ms_threads(threads)
    if threaded in metrics:  # a LiteRT deployable measured on more threads too
        lines.insert(3, f"  latency p50 on {threads} LiteRT threads {metrics[threaded]:.3f} ms")
    if evaluation.robustness is not None:
        kinds = sorted(evaluation.robustness.accuracy, key=evaluation.robustness.of_kind)
        worst = ", ".join(f"{kind} {evaluation.robustness.of_kind(kind):.3f}" for kind in kinds[:3])
        lines.append(
            f"  robust accuracy {evaluation.robustness.mean:.4f} ({evaluation.robustness.mode}); worst: {worst}"
        )
    for row in evaluation.top_confusions.itertuples(index=False):
        lines.append(
            f"  confused {row.true} -> {row.predicted}: {row.count} times ({row.share_of_errors:.0%} of errors)"
        )
    return "\n".join(lines)


def baseline_explainer(model_uri: str) -> Explainer | None:
    """Occlusion on the float32 deployable the model descends from (its lineage's baseline run), or None: a
    model no rtdeploy step made, or one of the train run (the baseline itself, or its Keras model)."""
    run_id = source_run_id(model_uri)
    baseline = baseline_of(mlflow.get_run(run_id).data.tags) if run_id else None
    if baseline is None or baseline.run_id in ("", run_id):
        return None
    return partial(occlusion_map, probability_function(f"runs:/{baseline.run_id}/{contract.LITERT_MODEL}"))


def model_explainer(local: str, predict_proba) -> Explainer:
    """Integrated gradients for a Keras model (its gradients exist), occlusion for a LiteRT deployable; the
    model is read from the folder already downloaded."""
    if "tensorflow" in mlflow.models.Model.load(local).flavors:
        from steps.modeling.explain_keras import integrated_gradients

        return partial(integrated_gradients, mlflow.tensorflow.load_model(local))
    return partial(occlusion_map, predict_proba)


def explain_worst_errors(
    probabilities: np.ndarray, explain: Explainer, explain_baseline: Explainer | None, data: Dataset, count: int
) -> list[ExplainedError]:
    """Maps of the `count` test samples the model got wrong most confidently (by its test-split
    `probabilities`), and the baseline's of each."""
    wrong = np.flatnonzero(probabilities.argmax(axis=1) != data.y_test)
    worst = wrong[np.argsort(probabilities[wrong].max(axis=1))[::-1][:count]]
    return [
        ExplainedError(
            int(i),
            explain(data.x_test[i]),
            None if explain_baseline is None else explain_baseline(data.x_test[i]),
        )
        for i in worst
    ]


def evaluate(config: EvaluateConfig, data: Dataset) -> tuple[dict[str, float], Evaluation, np.ndarray]:
    """Every number of the report: (metrics, analysis, predicted classes)."""
    with tempfile.TemporaryDirectory() as folder:  # downloaded once: predicting, profiling and sizing read it
        local = mlflow.artifacts.download_artifacts(config.model_uri, dst_path=folder)
        predict_proba = probability_function(local)
        probabilities = predict_proba(data.x_test)
        predicted = probabilities.argmax(axis=1)
        evaluation = analyse_predictions(predicted, data.y_test, data.class_names, top=config.top_confusions)
        evaluation.robustness = measure_robustness(predict_proba, data.x_test, data.y_test, config.robustness)
        evaluation.explained_errors = explain_worst_errors(
            probabilities,
            model_explainer(local, predict_proba),
            baseline_explainer(config.model_uri),
            data,
            config.explained_errors,
        )
        metrics = evaluation.metrics | profile_in_child(local, data.x_test, config.latency_runs, config.threads)
        return metrics | model_sizes(Path(local)), evaluation, predicted


def main(argv: list[str] | None = None) -> None:
    config = parse_config(EvaluateConfig, argv)
    data = load_dataset(config.dataset, image_size=config.image_size)
    check_model_reference(config.model_uri, "model_uri")
    with step_run(contract.EVALUATE):
        set_variant_tags(variant_of(config.model_uri), config.model_uri)
        log_config(config)
        log_dataset(data)
        metrics, evaluation, predicted = evaluate(config, data)
        mlflow.log_metrics(metrics)
        log_report(evaluation, data, predicted)
    print(summary(config.model_uri, metrics, evaluation, config.threads))


if __name__ == "__main__":
    run_cli(contract.EVALUATE, main)
