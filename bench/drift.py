"""Drift detection benchmark: the false-alarm rate of the drift tests on clean traffic, and the detection
rate of every simulated drift at its default severity, on a digits model trained as `train` trains it.

The deployable (LiteRT, as served) gets its reference profile on the validation split and its calibration on
the test split, as `register` makes them. Within one rate the windows share no sample: the 360 test samples
are cut into disjoint windows (7 of 50), so each window is an independent trial against the reference and the
95% Clopper-Pearson interval over them is the honest figure, wide as it is. False alarms: the clean windows the
profile's calibration stores (also at 100 and 200 samples, 3 and 1 windows). Detection: the same cut, each
window drifted at the kind's default severity (`steps/datasets/corruptions.py`). About 2 minutes on 2 cores. Writes
bench/RESULTS.md and README's block `drift`.

    python bench/drift.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import steps  # noqa: E402,F401  (TF_USE_LEGACY_KERAS before tensorflow)
from results import write_readme_block, write_section  # noqa: E402
from steps import contract  # noqa: E402
from steps.datasets.corruptions import DEFAULT_SEVERITY, SEVERITY_MEANING  # noqa: E402
from steps.monitoring.drift_rates import WINDOW, Rate, measure, rates_of  # noqa: E402
from steps.monitoring.drift_statistics import DEFAULT_ALPHA  # noqa: E402
from steps.monitoring.reference_profile import calibrate, make_reference  # noqa: E402

ALPHAS = (DEFAULT_ALPHA, 0.05)


def deployable():
    """The digits model `train` makes with its defaults, converted and run by LiteRT as the server runs it."""
    from steps.datasets.data import load_dataset
    from steps.modeling.architectures import build_model
    from steps.modeling.convert import to_tflite
    from steps.modeling.litert_runtime import LiteRTClassifier
    from steps.modeling.training import train
    from steps.settings import TrainConfig

    data = load_dataset("digits")
    config = TrainConfig()
    print(f"bench: training digits ({config.epochs} epochs)", flush=True)
    trained = train(config, data, build_model(config.architecture, data.input_shape, data.n_classes, config.width))
    return LiteRTClassifier(to_tflite(trained.model)), data


def reference_of(predict, data):
    """The reference profile as `register` makes it: the deployable's answers on the validation split."""
    return make_reference(predict(data.x_val), data.y_val, data.x_val, class_names=data.class_names)


def detections(predict, reference, x, y) -> dict[str, Rate]:
    """Each drift kind at its default severity, tested at DEFAULT_ALPHA on disjoint windows of (x, y)."""
    found = {}
    for kind in (kind for kind in contract.DRIFTS if kind != "none"):
        print(f"bench: windows with drift {kind}", flush=True)
        found[kind] = measure(predict, reference, x, y, kind, seed=contract.DRIFTS.index(kind))[DEFAULT_ALPHA]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args()
    classifier, data = deployable()
    predict = classifier.predict_proba
    reference = reference_of(predict, data)
    test_probabilities = predict(data.x_test)
    print("bench: clean windows (the profile's calibration)", flush=True)
    calibrated = calibrate(reference, test_probabilities, data.x_test)
    test_accuracy = float((test_probabilities.argmax(axis=1) == data.y_test).mean())
    statistics = contract.DRIFT_STATISTICS
    windows = len(calibrated.calibration[WINDOW])
    lines = [
        f"digits: the reference profile on {len(data.y_val)} validation samples; the {len(data.y_test)} test "
        f"samples cut into {windows} disjoint windows of {WINDOW} (no sample in two windows of one rate; the "
        "clean windows are those the profile's calibration stores, each drift re-cuts them). A window alarms "
        "when any of the three tests has p < alpha / 3 (Bonferroni). Rates with their 95% Clopper-Pearson "
        f"interval over the {windows} windows, the interval that {windows} independent windows support; the "
        "columns per statistic count the windows each test flagged.",
        "",
        "| traffic | severity | alpha | windows flagged | " + " | ".join(statistics) + " | model accuracy |",
        "|---|---|---:|---:|" + "---:|" * len(statistics) + "---:|",
    ]

    def row(traffic: str, severity, alpha: float, rate) -> str:
        counts = " | ".join(str(rate.by_statistic[name]) for name in statistics)
        return f"| {traffic} | {severity} | {alpha} | {rate} | {counts} | {rate.accuracy:.3f} |"

    readme = [
        f"| traffic ({windows} disjoint windows of {WINDOW}) | severity | windows flagged | model accuracy |",
        "|---|---:|---:|---:|",
    ]
    for alpha, rate in rates_of(calibrated.calibration[WINDOW], ALPHAS, WINDOW, test_accuracy).items():
        lines.append(row("clean (false alarms)", "", alpha, rate))
        readme.append(f"| clean: false alarms at `drift_alpha` {alpha} | | {rate} | {rate.accuracy:.3f} |")
    for kind, rate in detections(predict, reference, data.x_test, data.y_test).items():
        lines.append(row(f"{kind} (detection)", DEFAULT_SEVERITY[kind], DEFAULT_ALPHA, rate))
        readme.append(f"| `{kind}` | {DEFAULT_SEVERITY[kind]} | {rate} | {rate.accuracy:.3f} |")
    lines += [
        "",
        "The profile's calibration at every window size the test split can fill (what `register` stores):",
        "",
        f"| window size | false alarms at alpha {ALPHAS[0]} | at {ALPHAS[1]} |",
        "|---:|---:|---:|",
    ]
    for size, p_values in calibrated.calibration.items():
        rates = rates_of(p_values, ALPHAS, size, test_accuracy).values()
        lines.append(f"| {size} | " + " | ".join(map(str, rates)) + " |")
    lines += ["", "Severities: " + "; ".join(f"{kind}: {SEVERITY_MEANING[kind]}" for kind in contract.DRIFTS[1:])]
    body = "\n".join(lines)
    write_section("Drift detection (digits)", "python bench/drift.py", body)
    write_readme_block("drift", "\n".join(readme))
    print(body)


if __name__ == "__main__":
    main()
