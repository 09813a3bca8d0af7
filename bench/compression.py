"""Compression benchmark: every variant of `main` side by side with the float Keras model it came from.

Runs the whole pipeline on digits in a private tracking store (or reads an
existing pipeline run with --run-id), then measures the float Keras model's
single-sample latency through `model.predict` and `model(x)` in this process,
beside the float32 LiteRT deployable, and writes bench/RESULTS.md.

    python bench/compression.py                 # fresh pipeline run, about 4 minutes on 2 cores
    python bench/compression.py --run-id <id>   # a finished main run in $MLFLOW_TRACKING_URI
"""

from __future__ import annotations

import argparse
import os
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
from steps.measure import latency_percentiles_ms, single_sample_latency_ms  # noqa: E402

PROJECT = Path(__file__).resolve().parents[1]
KERAS_RUNS = 200  # model.predict costs tens of ms a call: fewer runs than LiteRT's


def run_pipeline() -> str:
    """`mlflow run .` into the current tracking store; returns the main run id."""
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run([sys.executable, "-m", "mlflow", "run", str(PROJECT), "--env-manager", "local"], check=True, env=env)
    (main,) = mlflow.search_runs(
        search_all_experiments=True, filter_string="tags.`mlflow.project.entryPoint` = 'main'", output_format="list"
    )
    return main.info.run_id


def reference_latencies(train_run_id: str) -> dict[str, tuple[float, float, float]]:
    """Single-sample latency of the float model three ways, in this one process."""
    data = load_dataset("digits")
    sample = data.x_test[:1]
    model = mlflow.tensorflow.load_model(f"runs:/{train_run_id}/{contract.KERAS_MODEL}")
    litert_path = mlflow.artifacts.download_artifacts(f"runs:/{train_run_id}/{contract.LITERT_MODEL}")
    litert = LiteRTClassifier.from_file(str(next(Path(litert_path).rglob("*.tflite"))))
    return {
        "Keras `model.predict(x)`": latency_percentiles_ms(lambda: model.predict(sample, verbose=0), 20, KERAS_RUNS),
        "Keras `model(x)`": latency_percentiles_ms(lambda: model(sample, training=False), 20, KERAS_RUNS),
        "LiteRT float32 (rtdeploy)": single_sample_latency_ms(litert, sample[0]),
    }


def report(main_run_id: str) -> str:
    main = mlflow.get_run(main_run_id)
    table = mlflow.load_table("variants.json", run_ids=[main_run_id])
    lines = [
        "| variant | accuracy | drop (points) | size (B) | gzip (B) | ratio | sparsity | p50 (ms) | p99 (ms) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in table.itertuples(index=False):
        lines.append(
            f"| {row.variant} | {row.accuracy:.4f} | {100 * row.accuracy_drop:+.2f} | {int(row.size_bytes):,} | "
            f"{int(row.size_gzip_bytes):,} | {row.compression_ratio:.1f}x | {row.sparsity:.2f} | "
            f"{row.latency_p50_ms:.3f} | {row.latency_p99_ms:.3f} |"
        )
    train_run_id = main.data.tags[contract.TAG_STEP_RUN.format(step="train")]
    lines += [
        "",
        "Single-sample latency of the float model (one process, after warm-up):",
        "",
        "| runtime | p50 (ms) | p95 (ms) | p99 (ms) |",
        "|---|---:|---:|---:|",
    ]
    for name, (p50, p95, p99) in reference_latencies(train_run_id).items():
        lines.append(f"| {name} | {p50:.3f} | {p95:.3f} | {p99:.3f} |")
    best = main.data.tags.get(contract.TAG_BEST_VARIANT, "none")
    ratio = main.data.metrics.get(contract.BEST_COMPRESSION_RATIO, float("nan"))
    lines += [
        "",
        f"Best variant within the 0.5-point accuracy budget: **{best}**, {ratio:.1f}x smaller gzipped "
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
