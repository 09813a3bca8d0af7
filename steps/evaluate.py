"""`evaluate` entry point: a full report on any model URI (Keras or LiteRT) on a data set's test split.

Accuracy, per-class precision/recall/F1, the confusion matrix, error types
(error rate per true class) and error causes (the most frequent true ->
predicted confusions, with example images), single-sample latency and batch
throughput, peak memory of loading and predicting (measured in a fresh child
process, so this process's tensorflow does not count), size and gzip size.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from steps import contract
from steps.config import parse_config, require_positive, run_cli, setting
from steps.data import Dataset, load_dataset
from steps.measure import sizes
from steps.report import confusion_examples_figure, confusion_matrix_figure, error_rate_figure
from steps.tracking import log_config, log_dataset, set_step_tags
from steps.variants import source_run_id

# Metric keys of the evaluation report (beyond the contract's shared ones)
THROUGHPUT = "throughput_batch32_per_s"
PEAK_RSS_MB = "peak_rss_mb"
LOAD_SECONDS = "load_seconds"
MACRO_F1 = "macro_f1"
ERROR_RATE = "error_rate"
BATCH_SIZE = 32
REPORT_FOLDER = "evaluation"  # artifact folder of the report's tables and figures


@dataclass(frozen=True)
class EvaluateConfig:
    """Evaluate a model (Keras or LiteRT) on the test split of a data set."""

    model_uri: str = setting(
        "", "runs:/<run_id>/litert_model, runs:/<run_id>/keras_model, models:/<name>@champion, ..."
    )
    dataset: str = setting("digits", "'digits', a .npz file or an image folder (the model's data set)")
    image_size: int = setting(28, "side in pixels that images of an image folder are resized to")
    top_confusions: int = setting(5, "how many of the most frequent true->predicted confusions to show")
    latency_runs: int = setting(300, "timed single-sample predictions (after warm-up) for the latency percentiles")

    def __post_init__(self):
        if not self.model_uri:
            raise ValueError(
                "model_uri is required, e.g. runs:/<run_id>/litert_model or models:/digits-classifier@champion"
            )
        for name in ("image_size", "top_confusions", "latency_runs"):
            require_positive(name, getattr(self, name))


@dataclass
class Evaluation:
    """What the predictions say about the model; pure numbers, no I/O."""

    accuracy: float
    per_class: pd.DataFrame  # class, precision, recall, f1, support, error_rate
    confusion: np.ndarray  # [true, predicted] counts
    top_confusions: pd.DataFrame  # true, predicted, count, share_of_errors, examples (test indices)

    @property
    def metrics(self) -> dict[str, float]:
        return {
            contract.ACCURACY: self.accuracy,
            ERROR_RATE: 1.0 - self.accuracy,
            MACRO_F1: float(self.per_class["f1"].mean()),
        }


def analyse_predictions(
    predicted: np.ndarray, truth: np.ndarray, class_names: tuple[str, ...], top: int = 5, examples: int = 4
) -> Evaluation:
    """Accuracy, per-class table, confusion matrix and the most frequent confusions."""
    n = len(class_names)
    confusion = np.zeros((n, n), dtype=np.int64)
    np.add.at(confusion, (truth, predicted), 1)
    true_positives = np.diag(confusion).astype(float)
    support = confusion.sum(axis=1)
    predicted_count = confusion.sum(axis=0)
    precision = np.divide(true_positives, predicted_count, out=np.zeros(n), where=predicted_count > 0)
    recall = np.divide(true_positives, support, out=np.zeros(n), where=support > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(n), where=(precision + recall) > 0)
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
    off_diagonal = confusion.copy()
    np.fill_diagonal(off_diagonal, 0)
    errors = int(off_diagonal.sum())
    pairs = sorted(((off_diagonal[t, p], t, p) for t in range(n) for p in range(n) if off_diagonal[t, p]), reverse=True)
    rows = []
    for count, t, p in pairs[:top]:
        indices = np.flatnonzero((truth == t) & (predicted == p))[:examples]
        rows.append(
            {
                "true": class_names[t],
                "predicted": class_names[p],
                "count": int(count),
                "share_of_errors": count / errors,
                "examples": indices.tolist(),
            }
        )
    columns = ["true", "predicted", "count", "share_of_errors", "examples"]
    return Evaluation(float((predicted == truth).mean()), per_class, confusion, pd.DataFrame(rows, columns=columns))


# Runs in a fresh interpreter: load the model, predict, report peak RSS, latency and throughput as JSON.
_PROFILE_SCRIPT = """
import json, sys, time
import numpy as np
import steps, mlflow
uri, sample_path, runs, batch_size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
x = np.load(sample_path)
start = time.perf_counter()
model = mlflow.pyfunc.load_model(uri)
load_seconds = time.perf_counter() - start
one = x[:1]
for _ in range(20):
    model.predict(one)
timings = []
for _ in range(runs):
    start = time.perf_counter()
    model.predict(one)
    timings.append(time.perf_counter() - start)
batch = np.resize(x, (batch_size, *x.shape[1:])).astype(np.float32)
model.predict(batch)
start, batches = time.perf_counter(), 0
while time.perf_counter() - start < 2.0 or batches < 5:
    model.predict(batch)
    batches += 1
throughput = batches * batch_size / (time.perf_counter() - start)
p50, p95, p99 = np.percentile(np.array(timings) * 1000, [50, 95, 99])
# VmHWM, not getrusage: ru_maxrss survives fork+exec and would report the parent's (tensorflow's) peak.
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
peak_rss_mb = int(status["VmHWM"].split()[0]) / 1024
print(json.dumps({"load_seconds": load_seconds, "p50": p50, "p95": p95, "p99": p99, "throughput": throughput,
                  "peak_rss_mb": peak_rss_mb}))
"""


def profile_in_child(model_uri: str, x: np.ndarray, latency_runs: int) -> dict[str, float]:
    """Latency, throughput and peak memory of loading and using the model through pyfunc, in a child process."""
    with tempfile.TemporaryDirectory() as folder:
        sample_path = Path(folder) / "sample.npy"
        np.save(sample_path, x[:64].astype(np.float32))
        result = subprocess.run(
            [sys.executable, "-c", _PROFILE_SCRIPT, model_uri, str(sample_path), str(latency_runs), str(BATCH_SIZE)],
            capture_output=True,
            text=True,
            timeout=900,
        )
    if result.returncode != 0:
        raise RuntimeError(f"profiling {model_uri} in a child process failed:\n{result.stderr[-2000:]}")
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    return {
        LOAD_SECONDS: measured["load_seconds"],
        contract.LATENCY_P50_MS: measured["p50"],
        contract.LATENCY_P95_MS: measured["p95"],
        contract.LATENCY_P99_MS: measured["p99"],
        THROUGHPUT: measured["throughput"],
        PEAK_RSS_MB: measured["peak_rss_mb"],
    }


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


def variant_of(model_uri: str) -> str:
    """The variant tag of the run that logged the model ("" if it has none)."""
    run_id = source_run_id(model_uri)
    return mlflow.get_run(run_id).data.tags.get(contract.TAG_VARIANT, "") if run_id else ""


def predict_classes(model_uri: str, x: np.ndarray) -> np.ndarray:
    """Predicted class per sample through the model's pyfunc flavor (Keras or LiteRT alike); URI or local folder."""
    model = mlflow.pyfunc.load_model(model_uri)
    return np.asarray(model.predict(x.astype(np.float32))).argmax(axis=1)


def log_report(evaluation: Evaluation, data: Dataset, predicted: np.ndarray) -> None:
    """Tables and figures of the evaluation on the active run, under evaluation/."""
    mlflow.log_table(evaluation.per_class, f"{REPORT_FOLDER}/per_class.json")
    confusion = pd.DataFrame(evaluation.confusion, columns=[f"predicted {c}" for c in data.class_names])
    confusion.insert(0, "true", list(data.class_names))
    mlflow.log_table(confusion, f"{REPORT_FOLDER}/confusion_matrix.json")
    top = evaluation.top_confusions.assign(examples=lambda t: t["examples"].map(str))
    mlflow.log_table(top, f"{REPORT_FOLDER}/top_confusions.json")
    figures = {
        "confusion_matrix.png": confusion_matrix_figure(evaluation.confusion, data.class_names),
        "error_rate_per_class.png": error_rate_figure(evaluation.per_class),
    }
    if len(evaluation.top_confusions):
        figures["top_confusions.png"] = confusion_examples_figure(evaluation.top_confusions, data.x_test)
    for name, figure in figures.items():
        mlflow.log_figure(figure, f"{REPORT_FOLDER}/{name}")
    # MLflow's own classifier evaluation on the same predictions, for its standard metrics and plots.
    frame = pd.DataFrame({"label": data.y_test, "prediction": predicted})
    mlflow.models.evaluate(data=frame, predictions="prediction", targets="label", model_type="classifier")


def summary(model_uri: str, metrics: dict[str, float], evaluation: Evaluation) -> str:
    worst = evaluation.per_class.sort_values("error_rate", ascending=False).iloc[0]
    lines = [
        f"evaluate: {model_uri}",
        f"  accuracy {metrics[contract.ACCURACY]:.4f}, macro F1 {metrics[MACRO_F1]:.4f}; "
        f"worst class {worst['class']} ({worst['error_rate']:.1%} wrong)",
        f"  latency p50 {metrics[contract.LATENCY_P50_MS]:.3f} ms, p99 {metrics[contract.LATENCY_P99_MS]:.3f} ms; "
        f"batch-{BATCH_SIZE} throughput {metrics[THROUGHPUT]:,.0f}/s; peak RSS {metrics[PEAK_RSS_MB]:.0f} MB",
        f"  size {int(metrics[contract.SIZE_BYTES]):,} B ({int(metrics[contract.SIZE_GZIP_BYTES]):,} B gzipped)",
    ]
    for row in evaluation.top_confusions.itertuples(index=False):
        lines.append(
            f"  confused {row.true} -> {row.predicted}: {row.count} times ({row.share_of_errors:.0%} of errors)"
        )
    return "\n".join(lines)


def evaluate(config: EvaluateConfig, data: Dataset) -> tuple[dict[str, float], Evaluation, np.ndarray]:
    """Every number of the report: (metrics, analysis, predicted classes)."""
    with tempfile.TemporaryDirectory() as folder:  # downloaded once: predicting, profiling and sizing read it
        local = mlflow.artifacts.download_artifacts(config.model_uri, dst_path=folder)
        predicted = predict_classes(local, data.x_test)
        evaluation = analyse_predictions(predicted, data.y_test, data.class_names, top=config.top_confusions)
        metrics = evaluation.metrics | profile_in_child(local, data.x_test, config.latency_runs)
        return metrics | model_sizes(Path(local)), evaluation, predicted


def main(argv: list[str] | None = None) -> None:
    config = parse_config(EvaluateConfig, argv)
    data = load_dataset(config.dataset, image_size=config.image_size)
    with mlflow.start_run():
        set_step_tags("evaluate", variant_of(config.model_uri), config.model_uri)
        log_config(config)
        log_dataset(data)
        metrics, evaluation, predicted = evaluate(config, data)
        mlflow.log_metrics(metrics)
        log_report(evaluation, data, predicted)
    print(summary(config.model_uri, metrics, evaluation))


if __name__ == "__main__":
    run_cli("evaluate", main)
