"""Within one measured rate, no sample is in two windows: the windows are independent trials."""

from __future__ import annotations

import numpy as np
import pytest

import steps.monitoring.drift_rates
import steps.monitoring.reference_profile
from steps.monitoring.drift_rates import WINDOW, measure
from steps.monitoring.reference_profile import (
    calibrate,
)
from tests.support.drift_samples import synthetic


@pytest.mark.parametrize("rate", ["calibration", "detection"])
def test_within_one_rate_no_sample_is_in_two_windows(reference, monkeypatch, rate):
    """The windows are independent trials only if they share no sample: watch every window the tests are run on."""
    rng = np.random.default_rng(19)
    probabilities, labels, images = synthetic(rng, 360)
    tested, real = [], steps.monitoring.reference_profile.drift_report

    def watched(profile, window_probabilities, window_images, **kwargs):
        tested.append(np.round(np.asarray(window_images).reshape(len(window_images), -1) * 255))
        return real(profile, window_probabilities, window_images, **kwargs)

    monkeypatch.setattr(steps.monitoring.reference_profile, "drift_report", watched)
    monkeypatch.setattr(steps.monitoring.drift_rates, "drift_report", watched)
    if rate == "calibration":
        calibrate(reference, probabilities, images, window_sizes=(WINDOW,), rng=rng)
    else:  # dimmed to a half: each image stays distinct
        measure(lambda x: probabilities[: len(x)], reference, images, labels, "dim", 0.5, window=WINDOW)
    assert len(tested) == 360 // WINDOW
    assert len(np.unique(np.concatenate(tested), axis=0)) == len(tested) * WINDOW
