"""Compression benchmark: every variant of `main` side by side with the float Keras model it came from.

Runs the whole pipeline on digits in a private tracking store (or reads an
existing pipeline run with --run-id). Sizes and accuracies are what the runs
logged (deterministic; test accuracy with its 95% Wilson interval, the choice
made on the validation split). Latencies are measured again here, in one
process: each variant's deployable and the float Keras model (`model.predict`
and `model(x)`), each figure the median of REPEATS measurements (each itself
the p50/p99 of hundreds of calls after warm-up) with min-max. Writes
bench/RESULTS.md.

    python bench/compression.py                 # fresh pipeline run, about 4 minutes on 2 cores
    python bench/compression.py --run-id <id>   # a finished main run in $MLFLOW_TRACKING_URI
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mlflow  # noqa: E402

import steps  # noqa: E402,F401  (TF_USE_LEGACY_KERAS before tensorflow)
from results import write_section  # noqa: E402
from steps import contract  # noqa: E402
from steps.data import load_dataset  # noqa: E402
from steps.litert_runtime import LiteRTClassifier  # noqa: E402
from steps.measure import LATENCY_RUNS, LATENCY_WARMUP, single_sample_latency_ms  # noqa: E402
from steps.timing import latency_percentiles_ms  # noqa: E402

PROJECT = Path(__file__).resolve().parents[1]
KERAS_RUNS = 200  # model.predict costs tens of ms a call: fewer runs than LiteRT's
REPEATS = 5  # latency measurements per figure: median and min-max


def run_pipeline() -> str:
    """`mlflow run .` into the current tracking store; returns the main run id."""
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run(
        [sys.executable, "-m", "mlflow", "run", str(PROJECT), "--env-manager", "local",
         "--experiment-name", contract.EXPERIMENT],
        check=True, env=env,
    )  # fmt: skip
    (main,) = mlflow.search_runs(
        search_all_experiments=True, filter_string=f"tags.`{contract.TAG_STEP}` = '{contract.MAIN}'",
        output_format="list",
    )  # fmt: skip
    return main.info.run_id


def repeated(measure) -> dict[str, list[float]]:
    """p50 and p99 (ms) of REPEATS calls of `measure()`, which returns (p50, p95, p99)."""
    results = [measure() for _ in range(REPEATS)]
    return {"p50": [r[0] for r in results], "p99": [r[2] for r in results]}


def spread(values: list[float], digits: int = 3) -> str:
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def deployable(run_id: str) -> LiteRTClassifier:
    folder = mlflow.artifacts.download_artifacts(f"runs:/{run_id}/{contract.LITERT_MODEL}")
    return LiteRTClassifier.from_file(str(next(Path(folder).rglob("*.tflite"))))


def reference_latencies(train_run_id: str, sample) -> dict[str, dict[str, list[float]]]:
    """Single-sample latency of the float model as Keras runs it, in this one process."""
    model = mlflow.tensorflow.load_model(f"runs:/{train_run_id}/{contract.KERAS_MODEL}")
    return {
        "Keras `model.predict(x)`": repeated(
            lambda: latency_percentiles_ms(lambda: model.predict(sample, verbose=0), 20, KERAS_RUNS)
        ),
        "Keras `model(x)`": repeated(
            lambda: latency_percentiles_ms(lambda: model(sample, training=False), 20, KERAS_RUNS)
        ),
    }


def report(main_run_id: str) -> str:
    main = mlflow.get_run(main_run_id)
    table = mlflow.MlflowClient().load_table(main.info.experiment_id, contract.VARIANTS_TABLE, [main_run_id])
    data = load_dataset("digits")
    sample = data.x_test[:1]
    lines = [
        f"Latency: one sample through LiteRT, median of {REPEATS} measurements (min–max), each the p50 or p99 of "
        f"{LATENCY_RUNS} calls after {LATENCY_WARMUP} warm-up calls. Accuracy: test split ({len(data.x_test)} "
        f"samples) with its 95% Wilson interval; the variant is chosen on the validation split ({len(data.x_val)} "
        "samples).",
        "",
        "| variant | val. drop (points) | test accuracy [95% CI] | size (B) | gzip (B) | ratio | sparsity | "
        "p50 (ms) | p99 (ms) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in table.itertuples(index=False):
        classifier = deployable(row.run_id)
        latency = repeated(lambda: single_sample_latency_ms(classifier, sample[0]))
        lines.append(
            f"| {row.variant} | {100 * row.val_accuracy_drop:+.2f} | {row.accuracy:.4f} "
            f"[{row.accuracy_low:.3f}, {row.accuracy_high:.3f}] | {int(row.size_bytes):,} | "
            f"{int(row.size_gzip_bytes):,} | {row.compression_ratio:.1f}x | {row.sparsity:.2f} | "
            f"{spread(latency['p50'])} | {spread(latency['p99'])} |"
        )
    train_run_id = main.data.tags[contract.TAG_STEP_RUN.format(step=contract.TRAIN)]
    lines += [
        "",
        f"Single-sample latency of the float model as Keras runs it (same process, median of {REPEATS}, min–max):",
        "",
        "| runtime | p50 (ms) | p99 (ms) |",
        "|---|---:|---:|",
    ]
    for name, latency in reference_latencies(train_run_id, sample).items():
        lines.append(f"| {name} | {spread(latency['p50'])} | {spread(latency['p99'])} |")
    best = main.data.tags.get(contract.TAG_BEST_VARIANT, "none")
    ratio = main.data.metrics.get(contract.BEST_COMPRESSION_RATIO, float("nan"))
    budget = main.data.params.get("max_accuracy_drop", "?")
    lines += [
        "",
        f"Best variant within the {budget} validation-accuracy budget: **{best}**, {ratio:.1f}x smaller gzipped "
        "than the float32 deployable (goal: 10x, TFMOT's MNIST figure; stretch: Deep Compression's 35x).",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-id", help="a finished main run to report instead of running the pipeline")
    args = parser.parse_args()
    if args.run_id:
        body = report(args.run_id)
        command = f"python bench/compression.py --run-id {args.run_id}"
    else:
        with tempfile.TemporaryDirectory() as folder:
            os.chdir(folder)
            os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{folder}/mlflow.db"
            mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
            body = report(run_pipeline())
        command = "python bench/compression.py"
    write_section("Compression variants (digits)", command, body)
    print(body)


if __name__ == "__main__":
    main()
