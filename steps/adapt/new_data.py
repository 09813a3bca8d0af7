"""An update's new samples: a data set (all its splits), or the labelled traffic in the prediction logs since the
champion's promotion; each sample taken or refused with a reason."""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from steps import contract
from steps.adapt.labelled import NOT_A_CLASS, labelled_samples
from steps.adapt.origin import Origin
from steps.datasets.data import Dataset, DatasetError, load_dataset
from steps.monitoring.traffic import log_files, parse_time, read
from steps.release.registry import promoted_at
from steps.settings import UpdateConfig

FEEDBACK_SOURCE = "feedback:"  # data_source of an update from labelled traffic: feedback:<logs>@<since>-<until>


@dataclasses.dataclass(frozen=True)
class NewSamples:
    x: np.ndarray
    y: np.ndarray  # indices into the champion's classes
    source: str  # the path, or the prediction logs and time range
    refused: dict[str, int]  # reason -> labelled samples refused


def new_samples(config: UpdateConfig, origin: Origin, old: Dataset) -> NewSamples:
    if config.new_data == contract.NEW_DATA_FEEDBACK:
        return labelled_feedback(config, origin, old)
    data = load_dataset(config.new_data, image_size=origin.image_size)
    if data.input_shape != old.input_shape:
        raise DatasetError(f"{config.new_data} has images shaped {data.input_shape}; the model takes {old.input_shape}")
    x = np.concatenate([data.x_train, data.x_val, data.x_test])
    names = np.array(data.class_names)[np.concatenate([data.y_train, data.y_val, data.y_test])]
    index = {name: i for i, name in enumerate(old.class_names)}
    known = np.array([name in index for name in names], bool)
    if not known.any():
        raise DatasetError(
            f"no sample of {config.new_data} has one of the model's classes ({', '.join(old.class_names)}) as its "
            f"label (it has {', '.join(data.class_names)}); all {len(names)} refused"
        )
    refused = {} if known.all() else {NOT_A_CLASS: int((~known).sum())}
    y = np.array([index[name] for name in names[known]], np.int64)
    return NewSamples(x[known], y, data.source, refused)


def labelled_feedback(config: UpdateConfig, origin: Origin, old: Dataset) -> NewSamples:
    files = log_files(config.prediction_log)
    since = parse_time(config.since, "since") or promoted_at(origin.champion)
    until = parse_time(config.until, "until") or time.time()
    labelled = labelled_samples(read(files, since, until), config.model_name, old.class_names, old.input_shape)
    print(f"update: {labelled.describe()} from {', '.join(map(str, files))} since {since:.0f}")
    if len(labelled.y) == 0:
        raise DatasetError(
            f"no labelled traffic of {config.model_name} in {config.prediction_log} between {since:.0f} and "
            f"{until:.0f} (unix seconds; {labelled.describe()}): send true labels to the server's /feedback, "
            "widen since/until, or pass a data set as new_data"
        )
    source = f"{FEEDBACK_SOURCE}{','.join(map(str, files))}@{since:.3f}-{until:.3f}"
    return NewSamples(labelled.x, labelled.y, source, labelled.refused)
