"""Training for robustness: README's `main` on digits, once as it is and once with `-P augment=standard`,
each champion measured under every 1-pixel translation and the corruption suite.

Both runs are the real command (`mlflow run . -P ...`), in a private tracking store, each registering under
a model name of its own so neither gate judges the other's champion. For each champion (the variant `main`
chose on validation, served as a LiteRT deployable): its accuracy on the test split moved by one pixel in each
of the 8 directions (zero fill; the worst direction is the figure that counts), its clean test accuracy with
its 95% interval, and its robust accuracy per kind from its run. The clean accuracies of the two champions
are compared with an exact McNemar test on the same test samples. About 10 minutes on 2 cores. Writes
bench/RESULTS.md and README's block `robust-training`.

    python bench/robust_training.py
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
import numpy as np  # noqa: E402

from results import write_readme_block, write_section  # noqa: E402
from steps import contract  # noqa: E402
from steps.core.stats import mcnemar, proportion  # noqa: E402
from steps.datasets.data import load_dataset  # noqa: E402
from steps.modeling.pyfunc import probability_function  # noqa: E402
from steps.release.registry import version_by_alias  # noqa: E402

PROJECT = Path(__file__).resolve().parents[1]
TRAININGS = {"plain": "none", "augmented": "standard"}  # model name suffix -> augment
DIRECTIONS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]
TARGET = 0.90  # the issue's: every 1-px translation at least 90% on the test split


def translated(x: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Every image moved dy pixels down and dx right, uncovered pixels 0."""
    out = np.zeros_like(x)
    height, width = x.shape[1:3]
    rows, columns = slice(max(dy, 0), height + min(dy, 0)), slice(max(dx, 0), width + min(dx, 0))
    out[:, rows, columns] = x[:, max(-dy, 0) : height + min(-dy, 0), max(-dx, 0) : width + min(-dx, 0)]
    return out


def run_main(model_name: str, augment: str) -> None:
    """README's main job with augment."""
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    command = [sys.executable, "-m", "mlflow", "run", str(PROJECT), "--env-manager", "local"]
    command += ["--experiment-name", contract.EXPERIMENT, "-P", f"model_name={model_name}", "-P", f"augment={augment}"]
    subprocess.run(command, env=env, check=True)


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    data = load_dataset("digits")
    with tempfile.TemporaryDirectory() as folder:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{folder}/mlflow.db"
        found = {}
        for name, augment in TRAININGS.items():
            print(f"bench: main with augment={augment}", flush=True)
            run_main(f"digits-{name}", augment)
            champion = version_by_alias(f"digits-{name}", contract.CHAMPION)
            source = mlflow.get_run(champion.tags[contract.VERSION_TAG_SOURCE_RUN])
            predict = probability_function(f"models:/digits-{name}@{contract.CHAMPION}")
            correct = predict(data.x_test).argmax(axis=1) == data.y_test
            moved = {
                d: float((predict(translated(data.x_test, *d)).argmax(axis=1) == data.y_test).mean())
                for d in DIRECTIONS
            }
            found[name] = (champion.tags[contract.VERSION_TAG_VARIANT], correct, moved, source.data.metrics)
    plain, augmented = found["plain"][1], found["augmented"][1]
    comparison = mcnemar(augmented, plain)
    lines = [
        "Champions of `mlflow run .` (defaults) and `mlflow run . -P augment=standard`, each chosen by `main` on "
        f"validation, on the {len(data.y_test)} test samples; one pixel is 1/8 of a digit's side.",
        "",
        "| training | champion | clean test accuracy | worst 1-px translation | "
        + " | ".join(f"({dy:+d}, {dx:+d})" for dy, dx in DIRECTIONS)
        + " | robust accuracy |",
        "|---|---|---:|---:|" + "---:|" * len(DIRECTIONS) + "---:|",
    ]
    for name, (variant, correct, moved, metrics) in found.items():
        lines.append(
            f"| {TRAININGS[name]} | {variant} | {proportion(correct)} | {min(moved.values()):.3f} | "
            + " | ".join(f"{moved[d]:.3f}" for d in DIRECTIONS)
            + f" | {metrics[contract.ROBUST_ACCURACY]:.4f} |"
        )
    kinds = contract.ROBUSTNESS_KINDS
    lines += [
        "",
        "Robust accuracy per kind (mean over its five levels; test split), from each champion's run:",
        "",
        "| training | " + " | ".join(kinds) + " |",
        "|---|" + "---:|" * len(kinds),
    ]
    for name, (_, _, _, metrics) in found.items():
        lines.append(
            f"| {TRAININGS[name]} | "
            + " | ".join(f"{metrics[contract.robust_accuracy_of(k)]:.3f}" for k in kinds)
            + " |"
        )
    worst = min(found["augmented"][2].values())
    lines += [
        "",
        f"Clean accuracy, augmented against plain, on the same test samples: {comparison}. The augmented "
        f"champion's worst 1-px translation: {worst:.3f} (target at least {TARGET}).",
    ]
    body = "\n".join(lines)
    write_section("Training for robustness (digits)", "python bench/robust_training.py", body)
    write_readme_block("robust-training", body)
    print(body)


if __name__ == "__main__":
    main()
