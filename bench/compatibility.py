"""Which compression works on which architecture: every recipe of `main` tried on every architecture.

Each architecture is built at 32x32x3 for three classes of `shapes`, trained for one epoch (the question is
whether the TFMOT transformations and the int8 conversion accept the network, not how accurate it gets),
then each recipe is applied as `main` applies it: pruning, clustering, pruning then clustering, each followed
by post-training int8 and by quantization-aware int8 (QAT, PQAT, CQAT, PCQAT). A cell is "yes" when the
int8 deployable was made and LiteRT ran it, else the first line of the error. Writes bench/RESULTS.md and
README's block `compatibility`.

    python bench/compatibility.py
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402

from results import write_readme_block, write_section  # noqa: E402
from steps import contract  # noqa: E402
from steps.datasets import shapes  # noqa: E402
from steps.datasets.data import Dataset, stratified_split  # noqa: E402
from steps.settings import ClusterConfig, PruneConfig, QuantizeConfig, TrainConfig  # noqa: E402

SIDE = 32
CLASSES = ("circle", "square", "stripes")
RECIPES = ("int8", "qat", "pruned-int8", "pruned-pqat", "clustered-int8", "clustered-cqat", "pruned-clustered-pcqat")


def small_shapes() -> Dataset:
    images, labels = shapes.generate_shapes(SIDE, per_class=40, classes=CLASSES, clutter=0, colour_coded=True)
    x = images.astype(np.float32) / 255
    x_rest, x_test, y_rest, y_test = stratified_split(x, labels, 0.2, 0)
    x_train, x_val, y_train, y_val = stratified_split(x_rest, y_rest, 0.2, 0)
    return Dataset("shapes-3", "bench", x_train, y_train, x_val, y_val, x_test, y_test, CLASSES)


def try_recipe(recipe: str, parent, data: Dataset) -> str:
    from steps.compress.compression import cluster_model, prune_model, quantize
    from steps.modeling.litert_runtime import LiteRTClassifier

    short = {"model_uri": "parent", "epochs": 1}
    steps = []
    try:
        model = parent
        if "pruned" in recipe:
            model = prune_model(model, data, PruneConfig(**short)).model
            steps.append({"step": contract.PRUNE})
        if "clustered" in recipe:
            model = cluster_model(model, data, ClusterConfig(**short)).model
            steps.append({"step": contract.CLUSTER})
        mode = "int8" if recipe.endswith("int8") else "qat"
        tflite, _ = quantize(model, data, QuantizeConfig(**short, mode=mode), steps)
        LiteRTClassifier(tflite).predict_proba(data.x_test[:4])
        return "yes"
    except Exception as error:  # the point is to record what fails, and how
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        return f"no: {type(error).__name__}: {first[:140]}"


def main() -> None:
    from steps.modeling.architectures import build_model
    from steps.modeling.training import train

    data = small_shapes()
    table = {}
    started = time.perf_counter()
    for architecture in contract.ARCHITECTURES:
        config = TrainConfig(architecture=architecture, epochs=1, width=8)
        model = build_model(architecture, data.input_shape, data.n_classes, config.width, config.alpha)
        parent = train(config, data, model).model
        for recipe in RECIPES:
            table[architecture, recipe] = try_recipe(recipe, parent, data)
            print(f"compatibility: {architecture} {recipe}: {table[architecture, recipe]}", flush=True)
    header = "| recipe | " + " | ".join(contract.ARCHITECTURES) + " |\n|---|" + "---|" * len(contract.ARCHITECTURES)
    rows = [
        f"| `{recipe}` | " + " | ".join(table[a, recipe] for a in contract.ARCHITECTURES) + " |" for recipe in RECIPES
    ]
    body = "\n".join([header, *rows])
    failures = {cell for cell in table.values() if cell != "yes"}
    note = (
        "Every recipe made an int8 deployable that LiteRT ran, on every architecture."
        if not failures
        else "A cell other than `yes` quotes the error's first line."
    )
    write_section(
        "Compression on each architecture",
        "python bench/compatibility.py",
        f"{body}\n\n{note} ({time.perf_counter() - started:.0f} s in all.)",
    )
    write_readme_block("compatibility", f"{body}\n\n{note}")


if __name__ == "__main__":
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()
    main()
