"""What the corruption suite costs: the seconds `measure_deployable` takes per variant with `robustness=off`,
`fast` and `full`, on digits through the default cnn and on `shapes` at 96 px through MobileNetV2 0.35 (random
init: time does not depend on the weights' values), float32 and int8, one LiteRT thread as every variant is
measured. `main` pays this once per variant. Each figure is the median (min-max) of several repeats in this
process, the modes taking turns. Writes bench/RESULTS.md and README's block `robustness-cost`.

    python bench/robustness_cost.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import steps  # noqa: E402,F401  (TF_USE_LEGACY_KERAS before tensorflow)
from results import spread, write_readme_block, write_section  # noqa: E402

SIDE = 96
ALPHA = 0.35
MODES = ("off", "fast", "full")


def cases():
    """(name, data set, {form: deployable}) for digits with the default cnn and shapes at SIDE with MobileNetV2."""
    import numpy as np
    from model_speed import deployables

    from steps.datasets.data import load_dataset
    from steps.modeling.architectures import build_model
    from steps.modeling.convert import to_tflite
    from steps.settings import TrainConfig

    digits = load_dataset("digits")
    cnn = build_model("cnn", digits.input_shape, digits.n_classes, TrainConfig().width)
    representative = np.random.default_rng(0).random((16, *digits.input_shape), np.float32)
    yield "digits, cnn", digits, {"float32": to_tflite(cnn, "none"), "int8": to_tflite(cnn, "int8", representative)}
    mobilenet = deployables(ALPHA, SIDE)
    shapes = load_dataset("shapes", image_size=SIDE)
    yield f"shapes {SIDE} px, MobileNetV2 {ALPHA}", shapes, {form: mobilenet[form] for form in ("float32", "int8")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="measurements per deployable and mode")
    repeats = parser.parse_args().repeats
    from steps.modeling.measure import measure_deployable

    table = [
        "| data, model | test + validation images | deployable | robustness=off | fast | full | full adds |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for name, data, forms in cases():
        seconds = {(form, mode): [] for form in forms for mode in MODES}
        for repeat in range(repeats):
            for form, tflite in forms.items():
                for mode in MODES:
                    started = time.perf_counter()
                    measure_deployable(tflite, data, mode)
                    seconds[form, mode].append(time.perf_counter() - started)
                    print(f"robustness_cost: {name} {form} {mode} {seconds[form, mode][-1]:.1f} s", flush=True)
        images = f"{len(data.y_test)} + {len(data.y_val)}"
        for form in forms:
            off, fast, full = (seconds[form, mode] for mode in MODES)
            added = [f - o for f, o in zip(full, off)]
            table.append(
                f"| {name} | {images} | {form} | {spread(off, 1)} | {spread(fast, 1)} | {spread(full, 1)} "
                f"| {spread(added, 1)} |"
            )
    body = (
        f"Seconds of `measure_deployable` per variant, one LiteRT thread; median (min-max) of {repeats} repeats. "
        "`off` is the rest of a variant's measurement (accuracy on both splits, latency, sizes); `fast` adds the "
        "8 corrupted copies of each split, `full` the 40.\n\n" + "\n".join(table)
    )
    write_section("Robustness cost", f"python bench/robustness_cost.py --repeats {repeats}", body)
    write_readme_block("robustness-cost", body)
    print(body)


if __name__ == "__main__":
    main()
