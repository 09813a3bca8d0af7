"""Compression search benchmark: what README's `search` command reaches with its defaults, over seeds.

For each architecture (the default cnn, and dscnn, the depthwise-separable one
that is small by design): `train` with its defaults, then README's `search`
command with every default (bounded by `timeout_minutes`, not by a trial count)
once per seed (`-P seed=...`: the sampler and the fine-tuning draws), in a
private tracking store, one after the other on this machine. Each seed
registers under a model name of its own, so no seed's gate is judged against
another seed's champion. Reported: the ratio of the chosen trial (smallest gzip
size within the budget on the validation split) to its own float32
deployable as the median (min–max) over the seeds, and per seed the chosen
trial, its test accuracy with its 95% Wilson interval, the trials the time
allowed, the wall time of the whole command and its outcome (promoted; refused
by the gate: the step's exit 3; nothing within the budget: exit 1, counted as
1.0x in the median, the float32 deployable being all there is). Writes
bench/RESULTS.md and README's blocks `search` (the figures) and `search-time`
(how long README's command took at most).

    python bench/search.py [--seeds 42,43,44] [--architectures cnn,dscnn]
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mlflow  # noqa: E402

from results import spread, write_readme_block, write_section  # noqa: E402
from steps import contract  # noqa: E402
from steps.release.registry import version_by_alias  # noqa: E402
from steps.settings import SearchConfig  # noqa: E402

PROJECT = Path(__file__).resolve().parents[1]
ARCHITECTURES = ("cnn", "dscnn")
SEEDS = (42, 43, 44)
NONE_WITHIN = " (none within the budget: the closest)"
DEFAULTS = SearchConfig(model_uri="runs:/<train_run_id>/keras_model")  # the defaults the table states


def mlflow_run(*args: str) -> int:
    """`mlflow run` as README shows it; its exit status (1 for any failed step: mlflow does not pass the step's on)."""
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    command = [sys.executable, "-m", "mlflow", "run", str(PROJECT), "--env-manager", "local"]
    command += ["--experiment-name", contract.EXPERIMENT, *args]
    return subprocess.run(command, env=env).returncode


def latest(step: str, architecture: str | None = None) -> mlflow.entities.Run:
    runs = mlflow.search_runs(
        search_all_experiments=True,
        output_format="list",
        order_by=["attributes.start_time DESC"],
        filter_string=f"tags.`{contract.TAG_STEP}` = '{step}'",
    )
    return next(run for run in runs if architecture is None or run.data.params.get("architecture") == architecture)


def search(model_uri: str, architecture: str, seed: int) -> dict:
    """README's search command with its defaults and this seed; the chosen (or closest) trial and the run's facts."""
    started = time.monotonic()
    parameters = {"model_uri": model_uri, "seed": seed, "model_name": f"bench-{architecture}-{seed}"}
    status = mlflow_run("-e", "search", *(arg for key, value in parameters.items() for arg in ("-P", f"{key}={value}")))
    elapsed = time.monotonic() - started
    parent = latest(contract.SEARCH)
    chosen = parent.data.tags.get(contract.TAG_BEST_RUN)
    if chosen is None:
        outcome = "nothing within the budget (exit 1)"
    elif version_by_alias(parameters["model_name"], contract.CHAMPION) is None:
        outcome = "refused by the gate (exit 3)"
    else:
        outcome = "promoted" if status == 0 else f"promoted, yet mlflow run exited {status}"
    if chosen is None:  # nothing within the budget: report the trial closest to it instead
        study = parent.data.tags[contract.TAG_STUDY]
        complete = f"tags.`{contract.TAG_STUDY}` = '{study}' and tags.`{contract.TAG_TRIAL_STATE}` = 'complete'"
        trials = mlflow.search_runs(search_all_experiments=True, output_format="list", filter_string=complete)
        best = min(trials, key=lambda run: run.data.metrics[contract.VAL_ACCURACY_DROP])
    else:
        best = mlflow.get_run(chosen)
    return {
        "seed": seed,
        "best": best.data.metrics,
        "variant": best.data.tags[contract.TAG_VARIANT],
        "minutes": elapsed / 60,
        "within": chosen is not None,
        "outcome": outcome,
        "trials": int(parent.data.metrics["trials_complete"]),
        "pruned": int(parent.data.metrics["trials_pruned"]),
    }


def benchmark(architecture: str, seeds: list[int]) -> dict:
    status = mlflow_run("-e", "train", "-P", f"architecture={architecture}")
    if status:
        raise SystemExit(f"bench/search.py: train -P architecture={architecture} exited {status}")
    train = latest(contract.TRAIN, architecture)
    model_uri = f"runs:/{train.info.run_id}/{contract.KERAS_MODEL}"
    runs = [search(model_uri, architecture, seed) for seed in seeds]
    return {"architecture": architecture, "train": train.data.metrics, "seeds": runs}


def report(results: list[dict], seeds: list[int]) -> str:
    lines = [
        f"Each architecture trained with `train`'s defaults, then README's command `mlflow run . -e search -P "
        f"model_uri=...` with every default (max_accuracy_drop {DEFAULTS.max_accuracy_drop} on the validation "
        f"split, timeout_minutes {DEFAULTS.timeout_minutes:g}, n_trials {DEFAULTS.n_trials}: bounded by time) once "
        f"per seed ({', '.join(map(str, seeds))}); each seed registers under a model name of its own. The ratio is "
        "the chosen trial's gzip size against its own float32 deployable; minutes are the whole command "
        "(sensitivity, trials, registration); a seed with nothing within the budget counts as 1.0x. Test "
        "accuracy with its 95% Wilson interval (360 test samples: one sample is 0.28 points).",
        "",
        "| architecture | weights | float32 gzip B | float32 test accuracy | x vs own float32, median (min–max) "
        "| minutes, median (min–max) | seeds within the budget |",
        "|---|---:|---:|---|---:|---:|---:|",
    ]
    for r in results:
        f, runs = r["train"], r["seeds"]
        within = [run for run in runs if run["within"]]
        ratio = spread([run["best"][contract.COMPRESSION_RATIO] if run["within"] else 1.0 for run in runs], 1)
        lines.append(
            f"| {r['architecture']} | {int(f[contract.PARAMS]):,} | {int(f[contract.SIZE_GZIP_BYTES]):,} | "
            f"{f[contract.ACCURACY]:.4f} [{f[contract.ACCURACY_LOW]:.3f}, {f[contract.ACCURACY_HIGH]:.3f}] | "
            f"{ratio} | {spread([run['minutes'] for run in runs], 1)} | {len(within)} of {len(runs)} |"
        )
    lines += [
        "",
        "| architecture | seed | outcome | trials (pruned) | chosen trial | gzip B | xz B | x vs own float32 "
        "| validation drop | test accuracy [95% CI] | minutes |",
        "|---|---:|---|---:|---|---:|---:|---:|---:|---|---:|",
    ]
    for r in results:
        for run in r["seeds"]:
            b = run["best"]
            lines.append(
                f"| {r['architecture']} | {run['seed']} | {run['outcome']} | {run['trials']} ({run['pruned']}) | "
                f"{run['variant']}{'' if run['within'] else NONE_WITHIN} | {int(b[contract.SIZE_GZIP_BYTES]):,} | "
                f"{int(b[contract.SIZE_XZ_BYTES]):,} | {b[contract.COMPRESSION_RATIO]:.1f} | "
                f"{b[contract.VAL_ACCURACY_DROP]:+.4f} | "
                f"{b[contract.ACCURACY]:.4f} [{b[contract.ACCURACY_LOW]:.3f}, {b[contract.ACCURACY_HIGH]:.3f}] | "
                f"{run['minutes']:.1f} |"
            )
    return "\n".join(lines)


def readme_summary(results: list[dict], seeds: list[int]) -> str:
    """README's paragraph: per architecture, the median ratio over the seeds, the time, the chosen trials."""
    named = ", ".join(map(str, seeds))
    lines = [
        f"Measured by `python bench/search.py` (README's command, defaults, seeds {named}; tables in "
        "`bench/RESULTS.md`):",
        "",
    ]
    for r in results:
        runs, float32 = r["seeds"], r["train"]
        within = [run for run in runs if run["within"]]
        ratios = [run["best"][contract.COMPRESSION_RATIO] if run["within"] else 1.0 for run in runs]
        chosen = "; ".join(
            f"seed {run['seed']}: `{run['variant']}`, {int(run['best'][contract.SIZE_GZIP_BYTES]):,} B gzipped, "
            f"validation drop {run['best'][contract.VAL_ACCURACY_DROP] * 100:+.2f} points, test accuracy "
            f"{run['best'][contract.ACCURACY]:.2%} [{run['best'][contract.ACCURACY_LOW]:.2%}, "
            f"{run['best'][contract.ACCURACY_HIGH]:.2%}], {run['trials']} complete trials, {run['outcome']}"
            for run in runs
        )
        lines.append(
            f"- **{r['architecture']}** (float32 {int(float32[contract.SIZE_GZIP_BYTES]):,} B gzipped, test accuracy "
            f"{float32[contract.ACCURACY]:.2%}): **{spread(ratios, 1)}x smaller** gzipped, median (min–max) over "
            f"{len(runs)} seeds, {len(within)} of them within the budget; the whole command took "
            f"{spread([run['minutes'] for run in runs], 1)} minutes. {chosen}."
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)), help="search seeds, comma-separated")
    parser.add_argument("--architectures", default=",".join(ARCHITECTURES), help="train architectures, in order")
    args = parser.parse_args()
    seeds = [int(seed) for seed in args.seeds.split(",")]
    architectures = [name.strip() for name in args.architectures.split(",") if name.strip()]
    with tempfile.TemporaryDirectory() as folder:
        os.chdir(folder)
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{folder}/mlflow.db"
        mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
        results = [benchmark(architecture, seeds) for architecture in architectures]
    table = report(results, seeds)
    command = f"python bench/search.py --seeds {args.seeds} --architectures {args.architectures}"
    write_section("Compression search (digits)", command, table)
    minutes = max(run["minutes"] for result in results for run in result["seeds"])
    write_readme_block("search-time", f"{math.ceil(minutes)} minutes at most")
    write_readme_block("search", readme_summary(results, seeds))
    print(table)


if __name__ == "__main__":
    main()
