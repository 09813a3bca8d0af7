"""The figures a person looks at: the variant comparison (table, accuracy vs cost with the Pareto front)
and the evaluation report (confusion matrix, errors per class, the images behind the top confusions)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import ScalarFormatter  # noqa: E402

from steps import contract  # noqa: E402
from steps.core.selection import Budget, VariantRow, pareto_front  # noqa: E402

TABLE_METRICS = (
    contract.VAL_ACCURACY,
    contract.VAL_ACCURACY_DROP,
    contract.ACCURACY,
    contract.ACCURACY_LOW,
    contract.ACCURACY_HIGH,
    contract.ACCURACY_DROP,
    contract.SIZE_BYTES,
    contract.SIZE_GZIP_BYTES,
    contract.COMPRESSION_RATIO,
    contract.SPARSITY,
    contract.LATENCY_P50_MS,
    contract.LATENCY_P99_MS,
    contract.AGREEMENT,
)
COSTS = (  # metric, axis label, scale
    (contract.SIZE_GZIP_BYTES, "gzip size (KiB, log scale)", 1 / 1024),
    (contract.LATENCY_P50_MS, "p50 latency, one sample (ms)", 1.0),
)


def comparison_table(rows: list[VariantRow]) -> dict[str, list]:
    """Columns for mlflow.log_table, one row per variant, smallest gzip size first."""
    ordered = sorted(rows, key=lambda r: r[contract.SIZE_GZIP_BYTES])
    table = {
        "variant": [r.variant for r in ordered],
        "step": [r.step for r in ordered],
        "run_id": [r.run_id for r in ordered],
    }
    for key in TABLE_METRICS:
        table[key] = [r.metrics.get(key) for r in ordered]
    return table


def comparison_figure(rows: list[VariantRow], best: VariantRow | None, max_accuracy_drop: float) -> Figure:
    """Accuracy vs gzip size and vs p50 latency: chosen on validation (top), reported on test with 95% CIs (bottom).

    The top row holds the Pareto front and the budget line of the choice; the
    bottom row shows what the test split says about the same variants.
    """
    figure, axes = plt.subplots(2, 2, figsize=(13, 10), constrained_layout=True)
    baseline_val = rows[0][contract.VAL_ACCURACY] + rows[0][contract.VAL_ACCURACY_DROP]  # the same for every row
    for column, (cost, label, scale) in enumerate(COSTS):
        choose, report = axes[0][column], axes[1][column]
        front = pareto_front(rows, cost)
        choose.scatter([r[cost] * scale for r in rows], [r[contract.VAL_ACCURACY] for r in rows], color="tab:blue")
        choose.plot(
            [r[cost] * scale for r in front],
            [r[contract.VAL_ACCURACY] for r in front],
            color="tab:orange",
            marker="o",
            label="Pareto front (validation)",
        )
        choose.axhline(
            baseline_val - max_accuracy_drop,
            color="tab:red",
            linestyle="--",
            linewidth=1,
            label=f"budget: float32 validation accuracy - {max_accuracy_drop}",
        )
        choose.set_ylabel("validation accuracy (used to choose)")
        low = [r[contract.ACCURACY] - r[contract.ACCURACY_LOW] for r in rows]
        high = [r[contract.ACCURACY_HIGH] - r[contract.ACCURACY] for r in rows]
        report.errorbar(
            [r[cost] * scale for r in rows],
            [r[contract.ACCURACY] for r in rows],
            yerr=[low, high],
            fmt="o",
            color="tab:blue",
            ecolor="tab:gray",
            capsize=3,
            label="95% Wilson interval",
        )
        report.set_ylabel("test accuracy (reported)")
        for axis, accuracy in ((choose, contract.VAL_ACCURACY), (report, contract.ACCURACY)):
            _decorate(axis, rows, best, cost, scale, accuracy, label)
    figure.suptitle("rtdeploy variants: accuracy vs cost (chosen on validation, reported on test)")
    return figure


def _decorate(axis, rows, best, cost: str, scale: float, accuracy: str, label: str) -> None:
    if best is not None:
        axis.scatter(
            [best[cost] * scale],
            [best[accuracy]],
            s=260,
            facecolors="none",
            edgecolors="tab:green",
            linewidths=2,
            zorder=4,
            label=f"chosen within budget: {best.variant}",
        )
    for row in rows:
        axis.annotate(
            row.variant, (row[cost] * scale, row[accuracy]), textcoords="offset points", xytext=(4, 4), fontsize=7
        )
    if cost == contract.SIZE_GZIP_BYTES:
        axis.set_xscale("log")
        axis.xaxis.set_major_formatter(ScalarFormatter())
        axis.xaxis.set_minor_formatter(ScalarFormatter())
        axis.tick_params(axis="x", which="minor", labelsize=7)
    axis.margins(x=0.08, y=0.2)
    axis.set_xlabel(label)
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, fontsize=8, frameon=False)


def confusion_matrix_figure(
    confusion, class_names: tuple[str, ...], title: str = "confusion matrix (test split)"
) -> Figure:
    """Counts of true (rows) vs predicted (columns) classes; the diagonal is right."""
    size = max(4.0, 0.55 * len(class_names) + 2)
    figure, axis = plt.subplots(figsize=(size, size * 0.85), constrained_layout=True)
    image = axis.imshow(confusion, cmap="Blues")
    figure.colorbar(image, ax=axis, shrink=0.8)
    ticks = np.arange(len(class_names))
    axis.set_xticks(ticks, class_names, rotation=45 if max(map(len, class_names)) > 3 else 0)
    axis.set_yticks(ticks, class_names)
    axis.set_xlabel("predicted class")
    axis.set_ylabel("true class")
    threshold = confusion.max() / 2 if confusion.size else 0
    for (row, column), count in np.ndenumerate(confusion):
        if count:
            color = "white" if count > threshold else "black"
            axis.text(column, row, str(count), ha="center", va="center", fontsize=8, color=color)
    axis.set_title(title)
    return figure


def error_rate_figure(per_class) -> Figure:
    """Error types: the share of each true class that the model gets wrong."""
    figure, axis = plt.subplots(figsize=(max(5.0, 0.5 * len(per_class) + 2), 3.5), constrained_layout=True)
    axis.bar(per_class["class"].astype(str), per_class["error_rate"], color="tab:red")
    axis.set_xlabel("true class")
    axis.set_ylabel("error rate")
    axis.set_title("errors per true class")
    axis.grid(True, axis="y", alpha=0.3)
    return figure


def show_image(axis, image: np.ndarray) -> None:
    """An input image as the model saw it: pixels in [0, 1], grey or colour."""
    axis.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=1)


def confusion_examples_figure(top_confusions, images) -> Figure:
    """Error causes: for each frequent true->predicted confusion, test images the model got wrong that way."""
    rows = len(top_confusions)
    columns = max(len(examples) for examples in top_confusions["examples"])
    figure, axes = plt.subplots(rows, columns, figsize=(1.6 * columns + 1.5, 1.6 * rows + 0.6), squeeze=False)
    for r, confusion in enumerate(top_confusions.itertuples(index=False)):
        for c in range(columns):
            axis = axes[r][c]
            axis.set_xticks([])
            axis.set_yticks([])
            if c < len(confusion.examples):
                image = images[confusion.examples[c]]
                show_image(axis, image)
            else:
                axis.axis("off")
        axes[r][0].set_ylabel(f"{confusion.true} -> {confusion.predicted}\n({confusion.count}x)", fontsize=8)
    figure.suptitle("most frequent confusions: true -> predicted")
    figure.tight_layout()
    return figure


FLIPPED_SHOWN = 24  # images in the flipped figure at most


def flipped_figure(flipped, data, baseline_predictions, predictions) -> Figure:
    """The test images whose class a variant changed: baseline's class -> variant's, and the true one."""
    shown = flipped[:FLIPPED_SHOWN]
    columns = min(8, len(shown))
    rows = -(-len(shown) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(1.5 * columns, 1.8 * rows + 0.5), squeeze=False)
    names = data.class_names
    for axis in axes.flat:
        axis.axis("off")
    for axis, index in zip(axes.flat, shown):
        image = data.x_test[index]
        show_image(axis, image)
        axis.set_title(
            f"{names[baseline_predictions[index]]}->{names[predictions[index]]}\n(true {names[data.y_test[index]]})",
            fontsize=7,
        )
    figure.suptitle(f"test samples that changed class: float baseline -> variant ({len(shown)} of {len(flipped)})")
    figure.tight_layout()
    return figure


def explained_errors_figure(
    images, titles: list[str], names, explanations: list, baselines: list | None = None
) -> Figure:
    """Per mistake (a row): the image, where the model looked (its saliency map, red supports its answer), and
    where the float baseline looked (when given), each titled with the class it gave."""
    baselines = baselines or [None] * len(explanations)
    columns = 3 if any(baseline is not None for baseline in baselines) else 2
    figure, axes = plt.subplots(len(images), columns, figsize=(2.2 * columns + 0.5, 2.2 * len(images)), squeeze=False)
    for row, image, title, explanation, baseline in zip(axes, images, titles, explanations, baselines):
        show_image(row[0], image)
        row[0].set_title(title, fontsize=8)
        shown = [("model", explanation), ("float baseline", baseline)][: columns - 1]
        for axis, (who, explanation) in zip(row[1:], shown):
            if explanation is None:
                axis.axis("off")
                continue
            saliency = explanation.saliency[..., 0]
            bound = max(float(np.abs(saliency).max()), 1e-6)
            axis.imshow(saliency, cmap="RdBu_r", vmin=-bound, vmax=bound)
            axis.set_title(
                f"{who}: {names[explanation.target]} ({explanation.probabilities[explanation.target]:.2f})", fontsize=8
            )
        for axis in row:
            axis.set_xticks([])
            axis.set_yticks([])
    figure.suptitle("where each model looked\n(red: for the class it gave)", fontsize=9)
    figure.tight_layout()
    return figure


def robustness_figure(robustness, clean_accuracy: float) -> Figure:
    """Accuracy against corruption level (1 mildest, 5 harshest), one line per kind, clean accuracy dashed."""
    figure, axis = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
    for kind, accuracies in robustness.accuracy.items():
        levels = np.arange(1, len(accuracies) + 1) if len(accuracies) > 1 else [3]  # fast: the default level only
        axis.plot(levels, accuracies, marker="o", label=kind)
    axis.axhline(clean_accuracy, color="black", linestyle="--", linewidth=1, label="clean")
    axis.set_xticks(range(1, 6))
    axis.set_xlabel("corruption level (3: the default severity)")
    axis.set_ylabel("accuracy")
    axis.set_ylim(0, 1.02)
    axis.set_title(f"accuracy under corruption: mean {robustness.mean:.3f} ({robustness.mode})")
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=8, ncol=2, loc="lower left")
    return figure


def sensitivity_figure(rows: list[dict], tolerated: dict[str, float], max_drop: float) -> Figure:
    """Validation accuracy drop vs sparsity, one line per layer pruned alone; its share of the weights in the legend."""
    figure, axis = plt.subplots(figsize=(8, 5), constrained_layout=True)
    for layer in dict.fromkeys(row["layer"] for row in rows):
        mine = sorted((r for r in rows if r["layer"] == layer), key=lambda r: r["sparsity"])
        label = f"{layer} ({mine[0]['share']:.0%} of the weights; ceiling {tolerated[layer]:.0%})"
        drops = [r["val_accuracy_drop"] * 100 for r in mine]
        line = axis.plot([r["sparsity"] for r in mine], drops, marker="o", label=label)
        axis.axvline(tolerated[layer], color=line[0].get_color(), linestyle=":", linewidth=1)
    axis.axhline(max_drop * 100, color="tab:red", linestyle="--", linewidth=1, label="tolerated drop")
    axis.set_xlabel("sparsity of that layer alone")
    axis.set_ylabel("validation accuracy drop (points)")
    axis.set_title("Per-layer pruning sensitivity (each layer pruned alone, short fine-tuning)")
    axis.legend(fontsize=8)
    return figure


def study_figure(trials: list[dict], best_number: int | None, budget: Budget, baseline_gzip: int) -> Figure:
    """The search in two panels: each trial's size in order (best feasible so far as a line), and the
    trade-off, size vs validation accuracy drop, with the budget and the front of the feasible trials."""
    figure, (history, tradeoff) = plt.subplots(1, 2, figsize=(14, 5.5), constrained_layout=True)
    feasible = [t for t in trials if budget.admits(t)]
    infeasible = [t for t in trials if not budget.admits(t)]
    for axis_trials, colour, label in (
        (feasible, "tab:blue", "within budget"),
        (infeasible, "tab:gray", "over budget"),
    ):
        history.scatter(
            [t["number"] for t in axis_trials],
            [t["size_gzip_bytes"] / 1024 for t in axis_trials],
            color=colour,
            label=label,
        )
        tradeoff.scatter(
            [t["size_gzip_bytes"] / 1024 for t in axis_trials],
            [t["val_accuracy_drop"] * 100 for t in axis_trials],
            color=colour,
            label=label,
        )
    best_so_far, steps = float("inf"), []
    for trial in sorted(trials, key=lambda t: t["number"]):
        if trial in feasible:
            best_so_far = min(best_so_far, trial["size_gzip_bytes"])
        steps.append((trial["number"], best_so_far / 1024))
    history.step(
        [n for n, _ in steps],
        [size for _, size in steps],
        where="post",
        color="tab:orange",
        label="smallest within budget so far",
    )
    history.set_xlabel("trial")
    history.set_ylabel("deployable, gzip KiB")
    history.set_yscale("log")
    history.set_title(f"Search history (float32 baseline: {baseline_gzip / 1024:,.0f} KiB)")
    front, smallest_drop = [], float("inf")
    for trial in sorted(trials, key=lambda t: (t["size_gzip_bytes"], t["val_accuracy_drop"]), reverse=True):
        if trial["val_accuracy_drop"] < smallest_drop:
            front.append(trial)
            smallest_drop = trial["val_accuracy_drop"]
    tradeoff.plot(
        [t["size_gzip_bytes"] / 1024 for t in front],
        [t["val_accuracy_drop"] * 100 for t in front],
        color="tab:orange",
        marker="o",
        label="Pareto front",
    )
    tradeoff.axhline(budget.max_accuracy_drop * 100, color="tab:red", linestyle="--", linewidth=1, label="budget")
    for trial in (t for t in trials if t["number"] == best_number):
        size = trial["size_gzip_bytes"] / 1024
        for axis, xy in ((history, (trial["number"], size)), (tradeoff, (size, trial["val_accuracy_drop"] * 100))):
            axis.scatter(*xy, s=200, facecolors="none", edgecolors="tab:red", linewidths=2, label="chosen")
    tradeoff.set_xscale("log")
    tradeoff.set_xlabel("deployable, gzip KiB")
    tradeoff.set_ylabel("validation accuracy drop vs float32 (points)")
    tradeoff.set_title("Size vs accuracy (validation: what the choice uses)")
    for axis in (history, tradeoff):
        axis.legend(fontsize=8)
    return figure


def update_tuning_figure(rows: list[dict], chosen: dict, max_old_drop: float) -> Figure:
    """update's learning_rate=tune: each candidate's old validation accuracy lost against what it learnt of the
    new validation samples, labelled with its rate and replay share, the budget and the choice marked."""
    figure, axis = plt.subplots(figsize=(7.5, 5), constrained_layout=True)
    for row in rows:
        xy = (row["old_val_accuracy_drop"] * 100, row["new_val_accuracy"] * 100)
        axis.scatter(*xy, color="tab:blue")
        axis.annotate(
            f"{row['learning_rate']:.2g}, {row['replay_fraction']}",
            xy,
            fontsize=7,
            xytext=(4, 3),
            textcoords="offset points",
        )
    axis.scatter(
        chosen["old_val_accuracy_drop"] * 100,
        chosen["new_val_accuracy"] * 100,
        s=200,
        facecolors="none",
        edgecolors="tab:red",
        linewidths=2,
        label="chosen",
    )
    axis.axvline(max_old_drop * 100, color="tab:red", linestyle="--", linewidth=1, label="max_old_drop")
    axis.set_xlabel("old validation accuracy lost vs the float parent (points)")
    axis.set_ylabel("new validation accuracy (%)")
    axis.set_title("update tuning: learning rate, replay share (each a fine-tuning of the float parent)")
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=8)
    return figure
