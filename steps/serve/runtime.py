"""Load, warm and run a registered LiteRT deployable, without mlflow in this process.

A child process (`steps.serve.fetch`) resolves the URI and downloads the
version; this process reads the .tflite into memory and builds its
interpreters, so the files can go as soon as the model is loaded.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np

from steps.modeling.litert_runtime import LiteRTClassifier

WARMUP_CALLS = 20
FETCH_TIMEOUT_SECONDS = 300


class ModelLoadFailed(Exception):
    """A version that cannot be served; the old one keeps serving.

    Carries what was learnt before the failure: the version (so it is not
    retried until the alias moves) and the registry URI (so it can be polled).
    """

    def __init__(
        self,
        message: str,
        version: str | None = None,
        registry_uri: str | None = None,
        peak_rss_bytes: int | None = None,
    ):
        super().__init__(message)
        self.version = version
        self.registry_uri = registry_uri
        self.peak_rss_bytes = peak_rss_bytes  # of the fetch child, which costs memory even when it fails


@dataclass(frozen=True)
class ModelRef:
    """Which registered version a URI meant when it was fetched."""

    name: str
    version: str
    alias: str | None
    run_id: str


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
        """Probabilities for a batch already checked against sample_shape."""
        return self.classifier.predict_batch(batch)

    def warm(self, max_batch_size: int = 1) -> None:
        """Build the calling thread's interpreters and run them before any request is timed."""
        size = 1
        while True:
            for _ in range(WARMUP_CALLS // 2 if size == 1 else 2):
                self.predict(np.zeros((size, *self.sample_shape), np.float32))
            if size >= max_batch_size:
                return
            size = min(size * 2, max_batch_size)


@dataclass(frozen=True)
class Fetched:
    model: ServedModel
    registry_uri: str  # where to poll the alias from now on
    peak_rss_bytes: int | None  # the fetch child's peak resident memory (None: not reported)


def fetch_in_child(model_uri: str, folder: str) -> dict:
    """Resolve and download model_uri into folder in a child process; its JSON answer (see steps.serve.fetch)."""
    try:
        child = subprocess.run(
            [sys.executable, "-m", "steps.serve.fetch", model_uri, folder],
            capture_output=True,
            text=True,
            timeout=FETCH_TIMEOUT_SECONDS,
        )
    except subprocess.TimeoutExpired as error:
        raise ModelLoadFailed(f"fetching {model_uri} took over {FETCH_TIMEOUT_SECONDS} s") from error
    answer = _last_json_line(child.stdout)
    if child.returncode != 0 or answer is None or "error" in answer:
        answer = answer or {}
        reason = answer.get("error") or child.stderr.strip()[-2000:] or f"exit code {child.returncode}"
        raise ModelLoadFailed(reason, answer.get("version"), answer.get("registry_uri"), answer.get("peak_rss_bytes"))
    return answer


def fetch(model_uri: str, download=fetch_in_child, threads: int = 1) -> Fetched:
    """Resolve and load model_uri. download(model_uri, folder) -> answer is the child process, or a stand-in."""
    with tempfile.TemporaryDirectory(prefix="rtdeploy-fetch-") as folder:
        answer = download(model_uri, folder)
        ref = ModelRef(answer["name"], answer["version"], answer["alias"], answer["run_id"])
        peak = answer.get("peak_rss_bytes")
        try:
            model = load(ref, answer["tflite"], answer["class_names"], threads)
        except ModelLoadFailed as error:
            raise ModelLoadFailed(str(error), ref.version, answer["registry_uri"], peak) from error
        return Fetched(model, answer["registry_uri"], peak)


def load(ref: ModelRef, tflite_path: str, class_names: list[str] | None, threads: int = 1) -> ServedModel:
    """Open a version's .tflite (each invocation on `threads` threads); any problem becomes ModelLoadFailed."""
    uri = f"models:/{ref.name}/{ref.version}"
    try:
        classifier = LiteRTClassifier.from_file(tflite_path, threads)
    except Exception as error:  # corrupt flatbuffer, unsupported ops
        raise ModelLoadFailed(f"{uri} cannot be loaded: {type(error).__name__}: {error}") from error
    if len(classifier.sample_shape) != 3:
        raise ModelLoadFailed(f"{uri} takes inputs {classifier.sample_shape}; an image model takes (H, W, C)")
    names = list(class_names or [str(i) for i in range(classifier.n_classes)])
    if len(names) != classifier.n_classes:
        raise ModelLoadFailed(f"{uri} has {len(names)} class names for {classifier.n_classes} outputs")
    return ServedModel(ref, classifier, names)


def _last_json_line(text: str) -> dict | None:
    for line in reversed(text.strip().splitlines()):
        try:
            return json.loads(line)
        except ValueError:
            continue
    return None
