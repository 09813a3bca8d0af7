"""The variant comparison a person looks at: a table and accuracy-vs-cost plots with the Pareto front."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import ScalarFormatter  # noqa: E402

from steps import contract  # noqa: E402
from steps.selection import VariantRow, pareto_front  # noqa: E402

TABLE_METRICS = (
    contract.ACCURACY,
    contract.ACCURACY_DROP,
    contract.SIZE_BYTES,
    contract.SIZE_GZIP_BYTES,
    contract.COMPRESSION_RATIO,
    contract.SPARSITY,
    contract.LATENCY_P50_MS,
    contract.LATENCY_P99_MS,
    contract.AGREEMENT,
)


def comparison_table(rows: list[VariantRow]) -> dict[str, list]:
    """Columns for mlflow.log_table, one row per variant, smallest gzip size first."""
    ordered = sorted(rows, key=lambda r: r[contract.SIZE_GZIP_BYTES])
    table = {"variant": [r.variant for r in ordered], "step": [r.step for r in ordered], "run_id": [r.run_id for r in ordered]}
    for key in TABLE_METRICS:
        table[key] = [r.metrics.get(key) for r in ordered]
    return table


def comparison_figure(rows: list[VariantRow], best: VariantRow | None = None) -> Figure:
    """Accuracy vs gzip size and vs p50 latency; Pareto front joined, best variant ringed."""
    figure, axes = plt.subplots(1, 2, figsize=(13, 5.5), constrained_layout=True)
    panels = ((contract.SIZE_GZIP_BYTES, "gzip size (KiB, log scale)", 1 / 1024), (contract.LATENCY_P50_MS, "p50 latency, one sample (ms)", 1.0))
    for axis, (cost, label, scale) in zip(axes, panels):
        front = pareto_front(rows, cost)
        axis.scatter([r[cost] * scale for r in rows], [r[contract.ACCURACY] for r in rows], color="tab:blue", zorder=2)
        axis.plot(
            [r[cost] * scale for r in front], [r[contract.ACCURACY] for r in front],
            color="tab:orange", marker="o", zorder=3, label="Pareto front",
        )
        if best is not None:
            axis.scatter([best[cost] * scale], [best[contract.ACCURACY]], s=260, facecolors="none",
                         edgecolors="tab:green", linewidths=2, zorder=4, label=f"best within budget: {best.variant}")
        for row in rows:
            axis.annotate(row.variant, (row[cost] * scale, row[contract.ACCURACY]), textcoords="offset points",
                          xytext=(4, 4), fontsize=7)
        if cost == contract.SIZE_GZIP_BYTES:
            axis.set_xscale("log")
            axis.xaxis.set_major_formatter(ScalarFormatter())
            axis.xaxis.set_minor_formatter(ScalarFormatter())
            axis.tick_params(axis="x", which="minor", labelsize=7)
        axis.margins(x=0.08, y=0.2)
        axis.set_xlabel(label)
        axis.set_ylabel("test accuracy")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, fontsize=8, frameon=False)
    figure.suptitle("rtdeploy variants: accuracy vs cost")
    return figure
