"""Compression search benchmark: how small `search` gets each architecture within the 0.5-point budget.

For each architecture (the default cnn, and dscnn, the depthwise-separable one
that is small by design): `train` with its defaults, then `search` on that
float model with a time budget, in a private tracking store, one after the
other on this machine. Reported for each: the float32 deployable, the chosen
trial (smallest gzip size within the budget on the validation split) with its
test accuracy and 95% Wilson interval, its ratio to its own float32 deployable
and to the cnn's, the xz size, and how many trials the time allowed. Writes
bench/RESULTS.md.

    python bench/search.py [--cnn-minutes 20] [--dscnn-minutes 8]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mlflow  # noqa: E402

from results import write_section  # noqa: E402
from steps import contract  # noqa: E402

PROJECT = Path(__file__).resolve().parents[1]
ARCHITECTURES = ("cnn", "dscnn")
NONE_WITHIN = " (none within the budget: the closest)"


def mlflow_run(*args: str, check: bool = True) -> None:
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run([sys.executable, "-m", "mlflow", "run", str(PROJECT), "--env-manager", "local",
                    "--experiment-name", contract.EXPERIMENT, *args], check=check, env=env)  # fmt: skip


def latest(step: str, architecture: str | None = None) -> mlflow.entities.Run:
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list",
                              order_by=["attributes.start_time DESC"],
                              filter_string=f"tags.`{contract.TAG_STEP}` = '{step}'")  # fmt: skip
    return next(run for run in runs if architecture is None or run.data.params.get("architecture") == architecture)


def search(architecture: str, minutes: float) -> dict:
    mlflow_run("-e", "train", "-P", f"architecture={architecture}")
    train = latest(contract.TRAIN, architecture)
    started = time.monotonic()
    mlflow_run(
        "-e",
        "search",
        "-P",
        f"model_uri=runs:/{train.info.run_id}/{contract.KERAS_MODEL}",
        "-P",
        f"timeout_minutes={minutes}",
        "-P",
        "n_trials=1000",
        "-P",
        f"model_name=bench-{architecture}",
        check=False,
    )  # fmt: skip  (a refused gate is reported too)
    elapsed = time.monotonic() - started
    parent = latest(contract.SEARCH)
    chosen = parent.data.tags.get(contract.TAG_BEST_RUN)
    if chosen is None:  # nothing within the budget: report the trial closest to it instead
        study = parent.data.tags[contract.TAG_STUDY]
        complete = f"tags.`{contract.TAG_STUDY}` = '{study}' and tags.`{contract.TAG_TRIAL_STATE}` = 'complete'"
        trials = mlflow.search_runs(search_all_experiments=True, output_format="list", filter_string=complete)
        best = min(trials, key=lambda run: run.data.metrics[contract.VAL_ACCURACY_DROP])
    else:
        best = mlflow.get_run(chosen)
    return {"architecture": architecture, "train": train.data.metrics, "params": train.data.metrics[contract.PARAMS],
            "best": best.data.metrics, "variant": best.data.tags[contract.TAG_VARIANT], "minutes": elapsed / 60,
            "within": chosen is not None, "trials": int(parent.data.metrics["trials_complete"]),
            "pruned": int(parent.data.metrics["trials_pruned"])}  # fmt: skip


def report(results: list[dict], budget_minutes: dict[str, float]) -> str:
    cnn_float = next(r for r in results if r["architecture"] == "cnn")["train"][contract.SIZE_GZIP_BYTES]
    lines = [
        "Each architecture trained with `train`'s defaults, then `search` with max_accuracy_drop 0.005 on the "
        "validation split and a time budget; the chosen trial's test accuracy is reported with its 95% Wilson "
        "interval (360 test samples: one sample is 0.28 points).",
        "",
        "| architecture | weights | float32 gzip B | float32 test accuracy | search budget (min) | trials (pruned) "
        "| chosen trial | gzip B | xz B | x vs own float32 | x vs cnn float32 | validation drop "
        "| test accuracy [95% CI] |",
        "|---|---:|---:|---|---:|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        f, b = r["train"], r["best"]
        lines.append(
            f"| {r['architecture']} | {int(r['params']):,} | {int(f[contract.SIZE_GZIP_BYTES]):,} | "
            f"{f[contract.ACCURACY]:.4f} [{f[contract.ACCURACY_LOW]:.3f}, {f[contract.ACCURACY_HIGH]:.3f}] | "
            f"{budget_minutes[r['architecture']]:g} ({r['minutes']:.0f} with sensitivity) | "
            f"{r['trials']} ({r['pruned']}) | {r['variant']}{'' if r['within'] else NONE_WITHIN} | "
            f"{int(b[contract.SIZE_GZIP_BYTES]):,} | "
            f"{int(b[contract.SIZE_XZ_BYTES]):,} | {b[contract.COMPRESSION_RATIO]:.1f} | "
            f"{cnn_float / b[contract.SIZE_GZIP_BYTES]:.1f} | {b[contract.VAL_ACCURACY_DROP]:+.4f} | "
            f"{b[contract.ACCURACY]:.4f} [{b[contract.ACCURACY_LOW]:.3f}, {b[contract.ACCURACY_HIGH]:.3f}] |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cnn-minutes", type=float, default=20, help="search time budget for the cnn")
    parser.add_argument("--dscnn-minutes", type=float, default=8, help="search time budget for the dscnn")
    args = parser.parse_args()
    budget = {"cnn": args.cnn_minutes, "dscnn": args.dscnn_minutes}
    with tempfile.TemporaryDirectory() as folder:
        os.chdir(folder)
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{folder}/mlflow.db"
        mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
        results = [search(architecture, budget[architecture]) for architecture in ARCHITECTURES]
    table = report(results, budget)
    command = f"python bench/search.py --cnn-minutes {args.cnn_minutes:g} --dscnn-minutes {args.dscnn_minutes:g}"
    write_section("Compression search (digits)", command, table)
    print(table)


if __name__ == "__main__":
    main()
