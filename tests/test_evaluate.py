"""The evaluation's analysis: errors per class, the most frequent confusions, and the most confident mistakes
explained beside the float baseline's maps."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest

from steps.datasets.data import load_dataset
from steps.evaluate import analyse_predictions, explain_worst_errors
from steps.modeling.explain import occlusion_map
from steps.reports.figures import explained_errors_figure


def test_analysis_counts_errors_per_class_and_the_most_frequent_confusions():
    truth = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    predicted = np.array([0, 1, 1, 1, 1, 2, 0, 2])
    report = analyse_predictions(predicted, truth, ("a", "b", "c"), top=2, examples=5)
    assert report.accuracy.value == pytest.approx(5 / 8) and report.accuracy.low < 5 / 8 < report.accuracy.high
    assert report.confusion.tolist() == [[1, 2, 0], [0, 2, 0], [1, 0, 2]]
    per_class = report.per_class.set_index("class")
    assert per_class.loc["a", "error_rate"] == pytest.approx(2 / 3)
    assert per_class.loc["b", "precision"] == pytest.approx(0.5) and per_class.loc["b", "recall"] == 1.0
    first = report.top_confusions.iloc[0]
    assert (first["true"], first["predicted"], first["count"], first["examples"]) == ("a", "b", 2, [1, 2])
    assert first["share_of_errors"] == pytest.approx(2 / 3)


def test_the_most_confident_mistakes_are_explained_beside_the_baselines_maps():
    """A nearest-centroid digits classifier (numpy) as the model, a blurrier one as its 'float baseline'."""
    data = load_dataset("digits")
    centroids = np.stack([data.x_train[data.y_train == k].mean(axis=0) for k in range(10)])

    def classifier(sharpness):
        def predict_proba(x):
            scores = -sharpness * ((x[:, None] - centroids[None]) ** 2).sum(axis=(2, 3, 4))
            scores = np.exp(scores - scores.max(axis=1, keepdims=True))
            return scores / scores.sum(axis=1, keepdims=True)

        return predict_proba

    model, baseline = classifier(1.0), classifier(0.3)
    probabilities = model(data.x_test)
    errors = explain_worst_errors(
        probabilities, partial(occlusion_map, model), partial(occlusion_map, baseline), data, count=4
    )
    wrong = probabilities.argmax(axis=1) != data.y_test
    assert [e.index for e in errors] == list(np.flatnonzero(wrong)[np.argsort(-probabilities[wrong].max(axis=1))][:4])
    assert all(e.explanation.target == probabilities[e.index].argmax() for e in errors)
    assert all(e.explanation.saliency.shape == (8, 8, 1) and e.baseline is not None for e in errors)
    images = data.x_test[[e.index for e in errors]]
    titles = [f"#{e.index}" for e in errors]
    figure = explained_errors_figure(
        images, titles, data.class_names, [e.explanation for e in errors], [e.baseline for e in errors]
    )
    assert len(figure.axes) == 4 * 3  # image, the model's map, the baseline's map
    assert explain_worst_errors(probabilities, partial(occlusion_map, model), None, data, count=0) == []
