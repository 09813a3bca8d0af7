"""The evaluation's analysis: errors per class and the most frequent confusions."""

from __future__ import annotations

import numpy as np
import pytest

from steps.evaluate import analyse_predictions


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
