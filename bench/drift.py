"""Drift detection benchmark: the false-alarm rate of the drift tests on clean traffic, and the detection
rate of every simulated drift at its default severity, on a digits model trained as `train` trains it.

The deployable (LiteRT, as served) gets its reference profile on the validation split, as `register`
makes it. False alarms: REDRAWN repeats, each splitting all held-out samples (validation and test) at random
into a reference as large as the validation split and a disjoint window of 200, so every window is
independent of its reference, as live traffic is. Detection: WINDOWS windows of 200 test samples per drift
kind, drifted at the default severity (`steps/shifts.py`). Every rate comes with its 95% Wilson interval.
Writes bench/RESULTS.md; about 5 minutes on 2 cores (most of it training and the permutation tests).

    python bench/drift.py [--redrawn 400] [--windows 100]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np  # noqa: E402

import steps  # noqa: E402,F401  (TF_USE_LEGACY_KERAS before tensorflow)
from results import write_section  # noqa: E402
from steps import contract  # noqa: E402
from steps.drift import DEFAULT_ALPHA, make_reference  # noqa: E402
from steps.drift_rates import WINDOW, detection, false_alarms_against_redrawn_references  # noqa: E402
from steps.shifts import DEFAULT_SEVERITY, SEVERITY_MEANING  # noqa: E402

ALPHAS = (DEFAULT_ALPHA, 0.05)


def deployable():
    """The digits model `train` makes with its defaults, converted and run by LiteRT as the server runs it."""
    from steps.architectures import build_model
    from steps.convert import to_tflite
    from steps.data import load_dataset
    from steps.litert_runtime import LiteRTClassifier
    from steps.settings import TrainConfig
    from steps.training import train

    data = load_dataset("digits")
    config = TrainConfig()
    print(f"bench: training digits ({config.epochs} epochs)", flush=True)
    trained = train(config, data, build_model(config.architecture, data.input_shape, data.n_classes, config.width))
    return LiteRTClassifier(to_tflite(trained.model)), data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redrawn", type=int, default=400, help="clean windows against redrawn references")
    parser.add_argument("--windows", type=int, default=100, help="drifted windows per kind")
    args = parser.parse_args()
    classifier, data = deployable()
    predict = classifier.predict_proba
    x, y = np.concatenate([data.x_val, data.x_test]), np.concatenate([data.y_val, data.y_test])
    print(f"bench: {args.redrawn} clean windows against redrawn references", flush=True)
    clean = false_alarms_against_redrawn_references(predict, x, y, len(data.y_val), args.redrawn, ALPHAS)
    reference = make_reference(predict(data.x_val), data.y_val, data.x_val, class_names=data.class_names)
    test_accuracy = float((predict(data.x_test).argmax(axis=1) == data.y_test).mean())
    statistics = contract.DRIFT_STATISTICS
    lines = [
        f"digits, windows of {WINDOW} samples; the reference profile on {len(data.y_val)} validation samples. "
        f"A window alarms when any of the three tests has p < alpha / 3 (Bonferroni). Rates with their 95% "
        "Wilson interval; the columns per statistic count the windows each test flagged.",
        "",
        "| traffic | severity | alpha | windows flagged | " + " | ".join(statistics) + " | model accuracy |",
        "|---|---|---:|---:|" + "---:|" * len(statistics) + "---:|",
    ]
    for alpha, rate in clean.items():
        counts = " | ".join(str(rate.by_statistic[name]) for name in statistics)
        lines.append(f"| clean (false alarms), independent references | | {alpha} | {rate} | {counts} | "
                     f"{test_accuracy:.3f} |")  # fmt: skip
    for kind in (kind for kind in contract.DRIFTS if kind != "none"):
        print(f"bench: {args.windows} windows with drift {kind}", flush=True)
        seed = contract.DRIFTS.index(kind)
        rate = detection(predict, reference, data.x_test, data.y_test, kind, args.windows, seed=seed)
        counts = " | ".join(str(rate.by_statistic[name]) for name in statistics)
        lines.append(f"| {kind} (detection) | {DEFAULT_SEVERITY[kind]} | {DEFAULT_ALPHA} | {rate} | {counts} | "
                     f"{rate.accuracy:.3f} |")  # fmt: skip
    lines += ["", "Severities: " + "; ".join(f"{kind}: {SEVERITY_MEANING[kind]}" for kind in contract.DRIFTS[1:])]
    body = "\n".join(lines)
    write_section("Drift detection (digits)", f"python bench/drift.py --redrawn {args.redrawn} "
                  f"--windows {args.windows}", body)  # fmt: skip
    print(body)


if __name__ == "__main__":
    main()
