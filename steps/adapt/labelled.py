"""Labelled traffic: the inputs servers logged, joined with the true labels clients sent, ready to train on.

Every labelled sample of the model is either taken or refused with a reason
(counted, never silently dropped): a label that is not one of the model's
classes, an input the server did not keep (`log_inputs` below 1), an input of
another shape than the model takes. A request retried under the same id is
taken once. numpy and pandas only.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from steps.monitoring.traffic import Traffic, labelled_rows

NOT_A_CLASS = "label is not one of the model's classes"
NOT_KEPT = "input not kept by the server (log_inputs below 1)"
WRONG_SHAPE = "input shape differs from the model's"


@dataclass
class Labelled:
    x: np.ndarray  # (n, *sample_shape) float32 pixels in [0, 1], as the model saw them
    y: np.ndarray  # indices into the model's class names
    refused: dict[str, int]  # reason -> labelled samples refused for it

    def describe(self) -> str:
        refused = "; ".join(f"{count} refused: {reason}" for reason, count in self.refused.items())
        return f"{len(self.y)} labelled samples taken" + (f" ({refused})" if refused else "")


def labelled_samples(
    traffic: Traffic, model_name: str, class_names: tuple[str, ...], sample_shape: tuple[int, ...]
) -> Labelled:
    """The labelled samples of `model_name` in `traffic` (its feedback joined on request id and sample index)."""
    labelled = labelled_rows(traffic)  # a retried request once: its last attempt
    labelled = labelled[labelled["model_name"] == model_name]
    index = {name: i for i, name in enumerate(class_names)}
    refused: Counter[str] = Counter()
    x, y = [], []
    for row, label in zip(labelled["row"], labelled["true_label"]):
        image = traffic.inputs[row]
        if label not in index:
            refused[NOT_A_CLASS] += 1
        elif image is None:
            refused[NOT_KEPT] += 1
        elif image.shape != tuple(sample_shape):
            refused[WRONG_SHAPE] += 1
        else:
            x.append(image)
            y.append(index[label])
    images = np.stack(x).astype(np.float32) if x else np.zeros((0, *sample_shape), np.float32)
    return Labelled(images, np.asarray(y, np.int64), dict(refused))
