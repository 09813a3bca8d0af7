"""What the corruption suite costs at photo size: the seconds `measure_deployable` takes per variant with
`robustness=off`, `fast` and `full`, on `shapes` at 96 px through MobileNetV2 0.35 (random init: time does not
depend on the weights' values), float32 and int8, one LiteRT thread as every variant is measured. `main` pays
this once per variant. Each figure is the median (min-max) of several repeats in this process, the modes
taking turns. Writes bench/RESULTS.md and README's block `robustness-cost`.

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
FORMS = ("float32", "int8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="measurements per deployable and mode")
    repeats = parser.parse_args().repeats
    from model_speed import deployables

    from steps.datasets.data import load_dataset
    from steps.modeling.measure import measure_deployable

    data = load_dataset("shapes", image_size=SIDE)
    forms = {name: tflite for name, tflite in deployables(ALPHA, SIDE).items() if name in FORMS}
    seconds = {(form, mode): [] for form in forms for mode in MODES}
    for repeat in range(repeats):
        for form, tflite in forms.items():
            for mode in MODES:
                started = time.perf_counter()
                measure_deployable(tflite, data, mode)
                seconds[form, mode].append(time.perf_counter() - started)
                print(f"robustness_cost: {form} {mode} {seconds[form, mode][-1]:.1f} s ({repeat + 1}/{repeats})")
    table = [
        "| deployable | robustness=off | fast | full | full adds |",
        "|---|---:|---:|---:|---:|",
    ]
    for form in forms:
        off, fast, full = (seconds[form, mode] for mode in MODES)
        added = [f - o for f, o in zip(full, off)]
        table.append(f"| {form} | {spread(off, 1)} | {spread(fast, 1)} | {spread(full, 1)} | {spread(added, 1)} |")
    body = (
        f"Seconds of `measure_deployable` per variant on `shapes` at {SIDE} px ({len(data.y_test)} test and "
        f"{len(data.y_val)} validation images), MobileNetV2 {ALPHA}, one LiteRT thread; median (min-max) of "
        f"{repeats} repeats. `off` is the rest of a variant's measurement (accuracy on both splits, latency, "
        "sizes); `fast` adds the 8 corrupted copies of each split, `full` the 40.\n\n" + "\n".join(table)
    )
    write_section("Robustness cost (shapes, 96 px)", f"python bench/robustness_cost.py --repeats {repeats}", body)
    write_readme_block("robustness-cost", body)
    print(body)


if __name__ == "__main__":
    main()
