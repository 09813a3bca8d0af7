"""Load, warm and run a registered LiteRT deployable; resolve which version an alias points at."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.models import Model

from steps.litert_model import LiteRTClassifier

MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))$")
WARMUP_CALLS = 20
CLASS_NAMES_KEY = "class_names"  # in the logged model's metadata


class ModelLoadFailed(Exception):
    """A version that cannot be served; the old one keeps serving."""


@dataclass(frozen=True)
class ModelRef:
    """Which registered version a URI means right now."""

    name: str
    version: str
    alias: str | None
    run_id: str

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def resolve(model_uri: str) -> ModelRef:
    """models:/<name>@<alias> or models:/<name>/<version> -> the version it points at now."""
    match = MODEL_URI.match(model_uri)
    if match is None:
        raise ValueError(f"model_uri {model_uri!r} is not models:/<name>@<alias> or models:/<name>/<version>")
    client = mlflow.MlflowClient()
    name, alias = match["name"], match["alias"]
    try:
        version = (
            client.get_model_version_by_alias(name, alias)
            if alias
            else client.get_model_version(name, match["version"])
        )
    except MlflowException as error:
        raise ModelLoadFailed(f"{model_uri} does not resolve to a version ({error.message})") from error
    return ModelRef(name, str(version.version), alias, version.run_id or "")


@dataclass
class ServedModel:
    ref: ModelRef
    classifier: LiteRTClassifier
    class_names: list[str]
    loaded_at: float = field(default_factory=time.time)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return self.classifier.sample_shape

    def predict(self, batch: np.ndarray) -> np.ndarray:
        return self.classifier.predict_proba(batch)

    def warm(self) -> None:
        """Allocate the calling thread's interpreter and run it a few times before any request is timed."""
        for size in (1, 1, 4):
            for _ in range(WARMUP_CALLS // 3):
                self.predict(np.zeros((size, *self.sample_shape), np.float32))


def load(ref: ModelRef) -> ServedModel:
    """Download and open a version's .tflite; any problem becomes ModelLoadFailed with the reason."""
    try:
        local = Path(mlflow.artifacts.download_artifacts(ref.uri))
        tflite = sorted(local.rglob("*.tflite"))
        if not tflite:
            raise ModelLoadFailed(f"{ref.uri} holds no .tflite file: register a LiteRT deployable (litert_model)")
        classifier = LiteRTClassifier.from_file(str(tflite[0]))
        metadata = Model.load(str(local)).metadata or {}
    except ModelLoadFailed:
        raise
    except Exception as error:  # corrupt flatbuffer, missing files, registry errors
        raise ModelLoadFailed(f"{ref.uri} cannot be loaded: {type(error).__name__}: {error}") from error
    if len(classifier.sample_shape) != 3:
        raise ModelLoadFailed(f"{ref.uri} takes inputs {classifier.sample_shape}; an image model takes (H, W, C)")
    names = list(metadata.get(CLASS_NAMES_KEY) or [str(i) for i in range(classifier.n_classes)])
    return ServedModel(ref, classifier, names)
