"""Compression benchmark: every variant of `main` side by side with the float Keras model it came from.

Runs the whole pipeline on digits in a private tracking store (or reads an
existing pipeline run with --run-id). Sizes and accuracies are what the runs
logged (deterministic; test accuracy with its 95% Wilson interval, the choice
made on the validation split). Latencies are measured again here, in one
process: each variant's deployable and the float Keras model (`model.predict`
and `model(x)`), each figure the median of REPEATS measurements (each itself
the p50/p99 of hundreds of calls after warm-up) with min-max. The pipeline
itself is timed: `mlflow run .` as README's quick start runs it, in a fresh
store each time (--main-repeats, median and min-max). Writes bench/RESULTS.md
and README's blocks `main-time` and `compression`.

    python bench/compression.py                 # three fresh pipeline runs, about 4 minutes each on 2 cores
    python bench/compression.py --run-id <id>   # a finished main run in $MLFLOW_TRACKING_URI (no timing)
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mlflow  # noqa: E402

import steps  # noqa: E402,F401  (TF_USE_LEGACY_KERAS before tensorflow)
from results import spread, write_readme_block, write_section  # noqa: E402
from steps import contract  # noqa: E402
from steps.core.timing import latency_percentiles_ms  # noqa: E402
from steps.datasets.data import load_dataset  # noqa: E402
from steps.modeling.litert_runtime import LiteRTClassifier  # noqa: E402
from steps.modeling.measure import LATENCY_RUNS, LATENCY_WARMUP, single_sample_latency_ms  # noqa: E402

PROJECT = Path(__file__).resolve().parents[1]
KERAS_RUNS = 200  # model.predict costs tens of ms a call: fewer runs than LiteRT's
REPEATS = 5  # latency measurements per figure: median and min-max
MAIN_REPEATS = 3  # fresh `mlflow run .` per timing of the quick start


def run_pipeline(folder: str) -> tuple[str, float]:
    """README's `mlflow run .` into a fresh store in `folder`: (the main run id, its wall time in seconds)."""
    uri = f"sqlite:///{folder}/mlflow.db"
    env = os.environ | {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "MLFLOW_TRACKING_URI": uri,
    }
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "mlflow",
            "run",
            str(PROJECT),
            "--env-manager",
            "local",
            "--experiment-name",
            contract.EXPERIMENT,
        ],
        check=True,
        env=env,
        cwd=folder,
    )
    seconds = time.perf_counter() - started
    mlflow.set_tracking_uri(uri)
    (main,) = mlflow.search_runs(
        search_all_experiments=True,
        filter_string=f"tags.`{contract.TAG_STEP}` = '{contract.MAIN}'",
        output_format="list",
    )
    return main.info.run_id, seconds


def repeated(measure) -> dict[str, list[float]]:
    """p50 and p99 (ms) of REPEATS calls of `measure()`, which returns (p50, p95, p99)."""
    results = [measure() for _ in range(REPEATS)]
    return {"p50": [r[0] for r in results], "p99": [r[2] for r in results]}


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


def report(main_run_id: str) -> tuple[str, dict]:
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
    p50s = {}
    for row in table.itertuples(index=False):
        classifier = deployable(row.run_id)
        latency = repeated(lambda: single_sample_latency_ms(classifier, sample[0]))
        p50s[row.variant] = statistics.median(latency["p50"])
        lines.append(
            f"| {row.variant} | {100 * row.val_accuracy_drop:+.2f} | {row.accuracy:.4f} "
            f"[{row.accuracy_low:.3f}, {row.accuracy_high:.3f}] | {int(row.size_bytes):,} | "
            f"{int(row.size_gzip_bytes):,} | {row.compression_ratio:.1f}x | {row.sparsity:.2f} | "
            f"{spread(latency['p50'], 3)} | {spread(latency['p99'], 3)} |"
        )
    train_run_id = main.data.tags[contract.TAG_STEP_RUN.format(step=contract.TRAIN)]
    lines += [
        "",
        f"Single-sample latency of the float model as Keras runs it (same process, median of {REPEATS}, min–max):",
        "",
        "| runtime | p50 (ms) | p99 (ms) |",
        "|---|---:|---:|",
    ]
    keras = reference_latencies(train_run_id, sample)
    for name, latency in keras.items():
        lines.append(f"| {name} | {spread(latency['p50'], 3)} | {spread(latency['p99'], 3)} |")
    best = main.data.tags.get(contract.TAG_BEST_VARIANT, "none")
    ratio = main.data.metrics.get(contract.BEST_COMPRESSION_RATIO, float("nan"))
    budget = main.data.params.get("max_accuracy_drop", "?")
    lines += [
        "",
        f"Best variant within the {budget} validation-accuracy budget: **{best}**, {ratio:.1f}x smaller gzipped "
        "than the float32 deployable (goal: 10x, TFMOT's MNIST figure; stretch: Deep Compression's 35x).",
    ]
    rows = {row.variant: row for row in table.itertuples(index=False)}
    return "\n".join(lines), {"rows": rows, "best": best, "p50s": p50s, "keras": keras}


def percent(value: float) -> str:
    return f"{100 * value:.1f}%"


def interval(row) -> str:
    return f"{percent(row.accuracy)} [{percent(row.accuracy_low)}, {percent(row.accuracy_high)}]"


def readme_summary(found: dict) -> str:
    """README's `compression` block: the headline figures of the table, from the same run."""
    rows, best = found["rows"], found["rows"].get(found["best"])
    base = rows[contract.FLOAT32_VARIANT]
    p50 = sorted(found["p50s"].values())
    predict, call = (statistics.median(latency["p50"]) for latency in found["keras"].values())
    chosen = (
        "No variant is within the budget."
        if best is None
        else (
            f"The variant chosen within the budget on the validation split, `{best.variant}`, is "
            f"{int(best.size_gzip_bytes):,} B gzipped at {interval(best)}, "
            f"{100 * best.val_accuracy_drop:+.2f} points on validation: "
            f"**{best.compression_ratio:.1f}x smaller** than the float32 deployable."
        )
    )
    return (
        f"On digits, measured by `python bench/compression.py` (table in `bench/RESULTS.md`): the float32 "
        f"deployable is {int(base.size_gzip_bytes):,} B gzipped at {interval(base)} test accuracy (95% interval). "
        f"{chosen} Every deployable answers one sample in {p50[0]:.2f}–{p50[-1]:.2f} ms p50 through LiteRT, against "
        f"{predict:.1f} ms for Keras `model.predict` and {call:.1f} ms for `model(x)` on the same float model."
    )


def main_time(seconds: list[float]) -> str:
    minutes = [value / 60 for value in seconds]
    return (
        f"{statistics.median(minutes):.1f} minutes (median of {len(minutes)} runs, "
        f"{min(minutes):.1f}–{max(minutes):.1f}; `python bench/compression.py`)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-id", help="a finished main run to report instead of running the pipeline")
    parser.add_argument("--main-repeats", type=int, default=MAIN_REPEATS, help="fresh pipeline runs to time")
    args = parser.parse_args()
    if args.run_id:
        body, found = report(args.run_id)
        command = f"python bench/compression.py --run-id {args.run_id}"
    else:
        seconds = []
        with tempfile.TemporaryDirectory() as folder:
            for repeat in range(args.main_repeats):  # the pipeline is deterministic: the first run is reported
                os.makedirs(f"{folder}/{repeat}")
                run_id, took = run_pipeline(f"{folder}/{repeat}")
                seconds.append(took)
                if repeat == 0:
                    body, found = report(run_id)
        body += f"\n\n`mlflow run .` (README's quick start, fresh store) took {main_time(seconds)}."
        write_readme_block("main-time", main_time(seconds))
        command = "python bench/compression.py"
    write_section("Compression variants (digits)", command, body)
    write_readme_block("compression", readme_summary(found))
    print(body)


if __name__ == "__main__":
    main()
