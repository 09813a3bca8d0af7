"""Update strategies: what an update from shifted feedback gains on the new data and loses on the old, per
strategy, over several seeds of the feedback draw, and how often `update`'s gate would promote it.

As `update` does it, in one process with the same functions: the digits champion is main's
pruned80-c16-qat-int8 recipe on a float model trained with `train`'s defaults; feedback is 1-px-shifted
digits (`simulate`'s default shift), drawn either from the test split (README's loop: 360 requests) or from the
training split (700 samples, the case the robustness issue reported); `mix` splits it and adds the replay,
`train` fine-tunes the float parent at a tenth of its rate with early stopping, the recipe runs again on the
result, and `decide_update` is the gate (at most `max_old_drop` lost on the old test split, no worse on the
new held-out samples). Strategies differ in `distill` (the champion's answers in the targets, Learning without
Forgetting) and `replay_fraction`; `learning_rate=tune` chooses the rate and the replay share on validation
data first, as `update` does (steps/adapt/tuning.py). About 35 minutes on 2 cores. Writes bench/RESULTS.md and
README's block `update-strategies`.

    python bench/update_strategies.py [--seeds 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

import steps  # noqa: E402,F401  (TF_USE_LEGACY_KERAS before tensorflow)
from results import spread, write_readme_block, write_section  # noqa: E402

SCENARIOS = {  # name -> (split the shifted feedback comes from, samples)
    "360 from the test split": ("test", 360),
    "700 from the training split": ("train", 700),
}
STRATEGIES = {  # name -> update settings (the replay share 0.5 unless named: update's default before this bench)
    "labels only (distill 0)": {"distill": 0.0, "replay_fraction": 0.5},
    "distill 0.3": {"distill": 0.3, "replay_fraction": 0.5},
    "distill 0.5": {"distill": 0.5, "replay_fraction": 0.5},
    "replay 0.7": {"distill": 0.0, "replay_fraction": 0.7},
    "learning_rate=tune": {"distill": 0.0, "learning_rate": "tune"},  # rate and replay chosen on validation
}
RECIPE = [{"step": "prune"}, {"step": "cluster"}]  # what PCQAT reads: pruned, then clustered


def recompress(parent, data, distill: float):
    """main's pruned80-c16-qat-int8 recipe on `parent`, each step distilling from its own parent."""
    from steps.compress.compression import cluster_model, prune_model, quantize
    from steps.modeling.litert_runtime import LiteRTClassifier
    from steps.settings import ClusterConfig, PruneConfig, QuantizeConfig

    pruned = prune_model(parent, data, PruneConfig(model_uri="-", distill=distill)).model
    clustered = cluster_model(pruned, data, ClusterConfig(model_uri="-", distill=distill)).model
    tflite, _ = quantize(clustered, data, QuantizeConfig(model_uri="-", mode="qat", distill=distill), RECIPE)
    return LiteRTClassifier(tflite)


def correct(classifier, x, y) -> np.ndarray:
    return classifier.predict_proba(x).argmax(axis=1) == y


def feedback(digits, split: str, n: int, seed: int):
    """n shifted samples with their labels, drawn from one split (with replacement from the 360 test samples,
    as `simulate` sends more requests than there are samples)."""
    from steps.datasets.corruptions import apply_drift

    rng = np.random.default_rng(seed)
    x, y = (digits.x_test, digits.y_test) if split == "test" else (digits.x_train, digits.y_train)
    chosen = rng.choice(len(y), n, replace=split == "test")
    return apply_drift(x[chosen], y[chosen], "shift", None, rng)


def update_once(base, champion, digits, x_new, y_new, settings: dict, seed: int) -> dict:
    from dataclasses import replace

    from steps.adapt.tuning import choose, tune
    from steps.adapt.update_data import mix
    from steps.modeling.training import independent_copy, train
    from steps.release.gate import decide_update
    from steps.settings import TUNE, TrainConfig, UpdateConfig

    config = replace(UpdateConfig(new_data="-", seed=seed), **settings)
    fine_tuning = TrainConfig(
        learning_rate=str(config.fine_tuning_rate(TrainConfig().step_size())),  # the base's own rate
        epochs=config.epochs,
        patience=config.patience,
        seed=config.seed,
        base_model="-",
        distill=config.distill,
    )
    chosen = ""
    if config.learning_rate == TUNE:
        reference, candidates = tune(base, digits, x_new, y_new, fine_tuning, seed)
        best, _ = choose(candidates, reference, config.max_old_drop, config.max_robust_accuracy_drop)
        chosen = f"replay {best.replay_fraction}, {best.learning_rate / fine_tuning.step_size():.2g}x auto's rate"
        config = replace(config, replay_fraction=best.replay_fraction)
        fine_tuning = replace(fine_tuning, learning_rate=str(best.learning_rate))
    mixed = mix(x_new, y_new, digits, config.replay_fraction, config.seed)
    data = mixed.as_dataset()
    parent = train(fine_tuning, data, independent_copy(base), teacher=base).model
    challenger = recompress(parent, data, config.distill)
    old = (correct(challenger, digits.x_test, digits.y_test), correct(champion, digits.x_test, digits.y_test))
    new = (
        correct(challenger, mixed.x_new_test, mixed.y_new_test),
        correct(champion, mixed.x_new_test, mixed.y_new_test),
    )
    verdict, _ = decide_update(old, new, config.max_old_drop)
    return {
        "old": 100 * (old[0].mean() - old[1].mean()),
        "new": 100 * (new[0].mean() - new[1].mean()),
        "promoted": not verdict.refused,
        "chosen": chosen,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5, help="feedback draws (and update seeds) per strategy")
    seeds = range(parser.parse_args().seeds)
    from steps.datasets.data import load_dataset
    from steps.modeling.architectures import build_model
    from steps.modeling.training import train
    from steps.settings import TrainConfig

    digits = load_dataset("digits")
    config = TrainConfig()
    print("bench: training the float model and its pruned80-c16-qat-int8 champion", flush=True)
    base = train(config, digits, build_model(config.architecture, digits.input_shape, 10, config.width)).model
    champion = recompress(base, digits, 0.0)
    champion_old = correct(champion, digits.x_test, digits.y_test).mean()
    results = {}
    started = time.monotonic()
    for scenario, (split, n) in SCENARIOS.items():
        for strategy, settings in STRATEGIES.items():
            runs = []
            for seed in seeds:
                x_new, y_new = feedback(digits, split, n, seed)
                runs.append(update_once(base, champion, digits, x_new, y_new, settings, seed))
                print(
                    f"bench: {scenario}, {strategy}, seed {seed}: old {runs[-1]['old']:+.1f}, new "
                    f"{runs[-1]['new']:+.1f} points, {'promoted' if runs[-1]['promoted'] else 'refused'} "
                    f"{runs[-1]['chosen']} "
                    f"({(time.monotonic() - started) / 60:.1f} min)",
                    flush=True,
                )
            results[scenario, strategy] = runs
    table = [
        "| feedback | strategy | old test split, points vs champion | new held-out, points | gate promotes "
        "| tune chose |",
        "|---|---|---:|---:|---:|---|",
    ]
    for (scenario, strategy), runs in results.items():
        old, new = [r["old"] for r in runs], [r["new"] for r in runs]
        promoted = sum(r["promoted"] for r in runs)
        choices = Counter(r["chosen"] for r in runs if r["chosen"])
        chose = "; ".join(f"{choice} ({count})" for choice, count in choices.most_common()) or "-"
        table.append(
            f"| {scenario} | {strategy} | {spread(old, 1)} | {spread(new, 1)} | {promoted} of {len(runs)} | {chose} |"
        )
    intro = (
        f"Digits champion pruned80-c16-qat-int8 at {champion_old:.4f} on the old test split (360 samples: one "
        f"sample is {100 / len(digits.y_test):.2f} points); feedback is 1-px-shifted digits. Median (min-max) "
        f"over {len(seeds)} seeds of the feedback draw and the update; the gate promotes when the challenger "
        "loses at most 1 point on the old test split and is no worse on the new held-out samples. Every "
        "strategy names its replay share (0.5 where it does not); `learning_rate=tune` chose its own, and its "
        "rate, among 0.5/0.7/0.85 and a third, one or three times auto's, on validation data (the count of "
        "seeds per choice in the last column)."
    )
    body = intro + "\n\n" + "\n".join(table)
    write_section("Update strategies (digits)", f"python bench/update_strategies.py --seeds {len(seeds)}", body)
    write_readme_block("update-strategies", body)
    print(body)


if __name__ == "__main__":
    main()
