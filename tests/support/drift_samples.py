"""Synthetic traffic whose drift is known: outputs, labels and images of a pretend classifier."""

from __future__ import annotations

import numpy as np

from steps.monitoring.reference_profile import ReferenceProfile, make_reference

LIVE = 200  # samples in a window of the fast tests (the e2e rates are measured on windows of drift_rates.WINDOW)


def synthetic(rng, n, *, classes=10, brightness=0.0, side=8, channels=1):
    """Outputs, labels and images of a pretend classifier: blobs whose class decides where they are bright."""
    labels = rng.integers(classes, size=n)
    images = rng.random((n, side, side, channels)).astype(np.float32) * 0.5
    rows = labels % side
    images[np.arange(n), rows] += 0.4
    images = np.clip(images + brightness, 0, 1)
    logits = rng.normal(0, 1, (n, classes)) + 4 * np.eye(classes)[labels]
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return probabilities.astype(np.float32), labels, images


def synthetic_reference() -> ReferenceProfile:
    """The profile of 288 synthetic held-out samples."""
    probabilities, labels, images = synthetic(np.random.default_rng(1), 288)
    return make_reference(probabilities, labels, images, latency={"latency_p99_ms": 0.5}, source="synthetic")
