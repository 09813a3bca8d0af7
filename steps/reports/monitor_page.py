"""What `monitor` shows a person: figures per model version and one self-contained HTML report.

Figures: latency histograms, drift p-values per window against the verdict's
threshold, the pixel drift heatmap of the most drifted window (a picture,
never an alert), the confusion matrix and errors per true class of labelled
traffic, and the input images behind the most frequent confusions. The HTML
report embeds them, so it opens in a browser from the MLflow UI's artifacts.
"""

from __future__ import annotations

import base64
import html
import io

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import confusion_matrix

from steps import contract
from steps.modeling.explain import occlusion_map
from steps.monitoring.traffic import utc
from steps.reports.figures import (
    confusion_examples_figure,
    confusion_matrix_figure,
    error_rate_figure,
    explained_errors_figure,
    plt,
)

TOP_CONFUSIONS = 5
EXAMPLES_PER_CONFUSION = 4
EXPLAINED_MISTAKES = 6  # misclassified samples of a version's windows shown with their occlusion maps


def figures_of(windows: list, traffic, names: tuple[str, ...], load_model=None) -> dict[str, Figure]:
    """Figures of one version's windows (file name -> figure); those without data are left out. load_model():
    the version's probability function (or None), called only when there are mistakes to explain."""
    version = windows[0].version
    figures = {"latency.png": latency_figure(traffic.predictions[traffic.predictions["model_version"] == version])}
    drifts = [w for w in windows if w.drift is not None]
    if drifts:
        figures["drift_p_values.png"] = drift_figure(drifts)
        with_heatmap = [w for w in drifts if w.drift.heatmap is not None]
        if with_heatmap:
            worst = min(with_heatmap, key=lambda w: w.drift.p_values[contract.DRIFT_P_PIXELS])
            figures["pixel_drift_heatmap.png"] = heatmap_figure(worst)
    labelled = [w.labelled for w in windows if w.labelled is not None and len(w.labelled)]
    if labelled:
        labelled = pd.concat(labelled, ignore_index=True)
        labels = np.arange(len(names))
        confusion = confusion_matrix(labelled["true_class"], labelled["predicted_class"], labels=labels)
        figures["confusion_matrix.png"] = confusion_matrix_figure(
            confusion, names, "confusion matrix (labelled traffic)"
        )
        figures["errors_per_true_class.png"] = error_rate_figure(errors_per_class(confusion, names))
        causes = error_causes(labelled, names)
        if causes is not None:
            figures["error_causes.png"] = confusion_examples_figure(*causes)
        explained = explained_mistakes(labelled, names, load_model)
        if explained is not None:
            figures["errors_explained.png"] = explained
    return figures


def explained_mistakes(labelled: pd.DataFrame, names: tuple[str, ...], load_model) -> Figure | None:
    """Occlusion maps of the window's misclassified samples whose input was kept (at most EXPLAINED_MISTAKES)."""
    wrong = mistakes_with_input(labelled)
    predict_proba = load_model() if load_model is not None and not wrong.empty else None
    if predict_proba is None:
        return None
    chosen = wrong.head(EXPLAINED_MISTAKES)
    images = np.stack(list(chosen["input"]))
    titles = [f"true {names[true]}" for true in chosen["true_class"]]
    return explained_errors_figure(images, titles, names, [occlusion_map(predict_proba, image) for image in images])


def latency_figure(predictions: pd.DataFrame) -> Figure:
    figure, axis = plt.subplots(figsize=(7, 3.8), constrained_layout=True)
    bins = np.geomspace(max(predictions["inference_ms"].min(), 1e-3), max(predictions["latency_ms"].max(), 1e-2), 40)
    axis.hist(predictions["latency_ms"], bins=bins, alpha=0.7, label="request received to answer")
    axis.hist(predictions["inference_ms"], bins=bins, alpha=0.7, label="model invocation")
    axis.set_xscale("log")
    axis.set_xlabel("milliseconds (log scale)")
    axis.set_ylabel("requests")
    axis.set_title("latency")
    axis.legend(fontsize=8)
    return figure


def drift_figure(windows: list) -> Figure:
    """p-value of each drift test per window, log scale, with the threshold the verdict compares them with."""
    figure, axis = plt.subplots(figsize=(7, 3.8), constrained_layout=True)
    steps = [w.index for w in windows]
    for statistic in contract.DRIFT_STATISTICS:
        values = [w.drift.p_values[statistic] for w in windows]
        if any(v is not None for v in values):
            axis.plot(steps, [np.nan if v is None else max(v, 1e-6) for v in values], marker="o", label=statistic)
    axis.plot(
        steps,
        [w.drift.threshold for w in windows],
        color="tab:red",
        linestyle="--",
        marker="_",
        markersize=20,
        label="threshold",
    )
    axis.set_yscale("log")
    axis.set_xlabel("window")
    axis.set_ylabel("p-value (low: drifted)")
    axis.set_title("drift against the reference profile")
    axis.legend(fontsize=7)
    return figure


def heatmap_figure(window) -> Figure:
    figure, axis = plt.subplots(figsize=(4.5, 4), constrained_layout=True)
    heatmap = window.drift.heatmap
    bound = max(float(np.nanmax(np.abs(heatmap))), 1e-9)
    image = axis.imshow(heatmap, cmap="coolwarm", vmin=-bound, vmax=bound)
    figure.colorbar(image, ax=axis, shrink=0.8, label="z of mean brightness, window - reference")
    axis.set_xticks([])
    axis.set_yticks([])
    axis.set_title(f"pixel drift, window {window.index} (a picture, not a test)", fontsize=9)
    return figure


def errors_per_class(confusion: np.ndarray, names: tuple[str, ...]) -> pd.DataFrame:
    support = confusion.sum(axis=1)
    right = np.diag(confusion)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(support > 0, 1 - right / np.maximum(support, 1), 0.0)
    return pd.DataFrame({"class": list(names), "error_rate": rate, "support": support})


def mistakes_with_input(labelled: pd.DataFrame) -> pd.DataFrame:
    """The labelled samples the model got wrong whose input the log kept."""
    return labelled[(labelled["predicted_class"] != labelled["true_class"]) & labelled["input"].notna()]


def error_causes(labelled: pd.DataFrame, names: tuple[str, ...]):
    """(top confusions with example indices, their images) from wrong labelled samples whose input was kept."""
    wrong = mistakes_with_input(labelled)
    if wrong.empty:
        return None
    pairs = wrong.groupby(["true_class", "predicted_class"]).size().sort_values(ascending=False).head(TOP_CONFUSIONS)
    images, rows = [], []
    for (true, predicted), count in pairs.items():
        chosen = wrong[(wrong["true_class"] == true) & (wrong["predicted_class"] == predicted)].head(
            EXAMPLES_PER_CONFUSION
        )
        examples = list(range(len(images), len(images) + len(chosen)))
        images += list(chosen["input"])
        rows.append({"true": names[true], "predicted": names[predicted], "count": int(count), "examples": examples})
    return pd.DataFrame(rows), np.stack(images)


def png_base64(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode()


def report_html(config, verdict, figures: dict[str, dict[str, Figure]]) -> str:
    """One page: the verdict, the notes, and per version its windows' numbers and figures."""
    alert = html.escape(verdict.alert)
    colour = "#2e7d32" if verdict.alert == contract.ALERT_NONE else "#c62828"
    parts = [
        f"<h1>rtdeploy monitor: {html.escape(config.model_name)}</h1>",
        f"<p>{len(verdict.windows)} window(s) of {config.window_minutes:g} min from {utc(verdict.start)} "
        f"to {utc(verdict.end)}. Alert: <b style='color:{colour}'>{alert}</b>. Thresholds: p99 ≤ "
        f"{config.max_p99_ms:g} ms, live accuracy ≥ {config.min_accuracy:g} (upper 95% bound), refused ≤ "
        f"{config.max_error_rate:g}, drift α = {config.drift_alpha:g}; an alert needs {config.consecutive} judged "
        f"window(s) in a row; windows under {config.min_samples} samples are not judged.</p>",
    ]
    if verdict.notes:
        parts.append("<ul>" + "".join(f"<li>{html.escape(note)}</li>" for note in verdict.notes) + "</ul>")
    errors = [
        {"window": i, "start": utc(low)} | {k: v for k, v in e.items() if k != "refused_share"}
        for i, ((low, _), e) in enumerate(zip(verdict.windows, verdict.errors))
    ]
    parts.append("<h2>Requests and refusals, all versions</h2>" + _table(errors))
    for version, windows in verdict.versions.items():
        parts.append(f"<h2>Version {html.escape(version)}</h2>")
        rows = [
            {
                "window": w.index,
                "start": utc(w.start),
                "samples": w.samples,
                "judged": w.judged,
                "breaks": ", ".join(sorted(w.breaches)) or "-",
                **w.metrics,
            }
            for w in windows
        ]
        parts.append(_table(rows))
        for name, figure in figures.get(version, {}).items():
            parts.append(
                f"<figure><img alt='{name}' src='data:image/png;base64,{png_base64(figure)}'>"
                f"<figcaption>{html.escape(name)}</figcaption></figure>"
            )
    style = (
        "body{font-family:sans-serif;margin:2em;max-width:1400px} table{border-collapse:collapse;font-size:12px}"
        "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right} figure{display:inline-block;margin:8px}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>rtdeploy monitor</title><style>{style}</style>"
        f"</head><body>{''.join(parts)}</body></html>"
    )


def _table(rows: list[dict]) -> str:
    frame = pd.DataFrame(rows)
    return frame.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="-", border=0)
