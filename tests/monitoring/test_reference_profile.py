"""The reference profile of a deployable: made from held-out behaviour, windows of traffic reported against it
(the verdict with its reasons, windows without images, traffic that does not fit), calibrated on disjoint
clean windows with an interval that holds, saved and loaded."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import binom

from steps import contract
from steps.monitoring.drift_statistics import (
    DEFAULT_ALPHA,
    median_distance,
)
from steps.monitoring.reference_profile import (
    ARRAYS_FILE,
    JSON_FILE,
    MIN_PIXEL_IMAGES,
    ProfileError,
    ReferenceProfile,
    calibrate,
    disjoint_windows,
    drift_report,
    rate_interval,
)
from tests.support.drift_samples import LIVE, synthetic


def test_a_clean_window_is_not_drift_and_an_obvious_one_is_with_its_reasons(reference):
    rng = np.random.default_rng(7)
    probabilities, _, images = synthetic(rng, LIVE)
    clean = drift_report(reference, probabilities, images, rng=rng)
    assert not clean.drifted and clean.reasons == ()
    assert set(clean.p_values) == set(contract.DRIFT_STATISTICS) and clean.metrics() == clean.p_values
    assert clean.threshold == pytest.approx(DEFAULT_ALPHA / 3)

    probabilities, _, images = synthetic(rng, LIVE, brightness=0.3)
    bright = drift_report(reference, probabilities, images, rng=rng)
    assert bright.drifted and bright.reasons == (contract.DRIFT_P_PIXELS,)
    assert bright.heatmap.shape == (8, 8) and bright.heatmap.min() > 3  # every pixel brighter


def test_a_class_prior_shift_is_seen_in_the_predicted_classes(reference):
    rng = np.random.default_rng(8)
    probabilities, _, images = synthetic(rng, 1000)
    favoured = probabilities.argmax(axis=1) < 3
    chosen = np.r_[np.flatnonzero(favoured)[:120], np.flatnonzero(~favoured)[:80]]
    report = drift_report(reference, probabilities[chosen], images[chosen], rng=rng)
    assert contract.DRIFT_P_CLASSES in report.reasons
    assert report.class_counts.sum() == LIVE and report.class_counts[:3].sum() == 120


def test_without_images_the_pixel_test_is_not_run_and_not_drift(reference):
    rng = np.random.default_rng(9)
    probabilities, _, images = synthetic(rng, LIVE)
    for kept in (None, images[:0], images[: MIN_PIXEL_IMAGES - 1]):
        report = drift_report(reference, probabilities, kept, rng=rng)
        assert report.p_values[contract.DRIFT_P_PIXELS] is None
        assert contract.DRIFT_P_PIXELS in report.not_run and contract.DRIFT_P_PIXELS not in report.metrics()
        assert not report.drifted and report.threshold == pytest.approx(DEFAULT_ALPHA / 2)
        assert report.heatmap is None and report.images == 0


def test_a_share_of_the_images_is_enough_for_the_pixel_test(reference):
    rng = np.random.default_rng(10)
    probabilities, _, images = synthetic(rng, LIVE, brightness=0.3)
    report = drift_report(reference, probabilities, images[:40], rng=rng)  # e.g. log_inputs=0.2
    assert report.images == 40 and report.samples == LIVE
    assert report.p_values[contract.DRIFT_P_PIXELS] < report.threshold


def test_logged_uint8_images_compare_like_held_out_floats(reference):
    rng = np.random.default_rng(11)
    probabilities, _, images = synthetic(rng, LIVE)
    logged = np.round(images * 255).astype(np.uint8)  # what the prediction log keeps
    floats = drift_report(reference, probabilities, images, rng=np.random.default_rng(0))
    as_logged = drift_report(reference, probabilities, logged, rng=np.random.default_rng(0))
    assert as_logged.p_values == floats.p_values
    for layout in (logged.reshape(LIVE, -1), logged[..., 0]):  # flattened; grey without a channel axis
        assert drift_report(reference, probabilities, layout, rng=np.random.default_rng(0)).p_values == floats.p_values


def test_traffic_that_does_not_fit_the_reference_is_refused(reference):
    rng = np.random.default_rng(12)
    probabilities, _, images = synthetic(rng, LIVE)
    with pytest.raises(ProfileError, match="classes"):
        drift_report(reference, probabilities[:, :5], images)
    with pytest.raises(ProfileError, match="shaped"):
        drift_report(reference, probabilities, images[:, :6, :6])
    with pytest.raises(ValueError, match="empty"):
        drift_report(reference, probabilities[:0], None)
    with pytest.raises(ValueError, match="alpha"):
        drift_report(reference, probabilities, images, alpha=1.5)


def test_the_reference_summarises_the_held_out_data(reference):
    assert reference.class_counts.sum() == len(reference.labels) == 288
    assert reference.accuracy == pytest.approx((reference.predicted == reference.labels).mean())
    truth = reference.labels == 3
    assert reference.per_class_recall[3] == pytest.approx((reference.predicted[truth] == 3).mean())
    assert reference.pixels.shape == (288, 64) and reference.image_shape == (8, 8, 1)
    assert reference.bandwidth == median_distance(reference.pixels) > 0  # the median heuristic
    assert reference.false_alarms(LIVE) is None  # not calibrated yet


def test_calibration_stores_clean_p_values_of_disjoint_windows_and_the_false_alarm_rate_at_any_alpha(reference):
    rng = np.random.default_rng(14)
    probabilities, _, images = synthetic(rng, 320)
    calibrated = calibrate(reference, probabilities, images, window_sizes=(50, 100, 500), rng=rng)
    assert {size: len(p) for size, p in calibrated.calibration.items()} == {50: 6, 100: 3}  # 320 // size; no 500
    assert calibrated.calibration[50].shape == (6, 3) and calibrated.calibration_pool == 320
    measured = calibrated.false_alarms(60)
    assert (measured.window_size, measured.windows, measured.false_alarms) == (50, 6, 0)
    assert measured.interval == pytest.approx((0.0, 1 - 0.025 ** (1 / 6)))  # Clopper-Pearson: 0 of 6
    assert str(measured) == "0 of 6 disjoint clean windows of 50 at alpha 0.01: 0.0% [0.0%, 45.9%]"
    assert calibrated.false_alarms(400).window_size == 100
    loose = calibrated.false_alarms(50, alpha=0.6)  # recomputed from the stored p-values at any alpha
    assert loose.false_alarms == (calibrated.calibration[50] < 0.2).any(axis=1).sum() > 0
    report = drift_report(calibrated, probabilities[:90], None)
    assert report.false_alarms == calibrated.false_alarms(90, pixels=False)


def test_disjoint_windows_share_no_sample_and_leave_out_only_the_remainder():
    rng = np.random.default_rng(18)
    windows = disjoint_windows(360, 50, rng)
    assert windows.shape == (7, 50) and len(np.unique(windows)) == 350 and windows.max() < 360
    assert disjoint_windows(360, 360, rng).shape == (1, 360) and disjoint_windows(360, 361, rng).shape == (0, 361)
    assert not np.array_equal(disjoint_windows(360, 50, rng), windows)  # a random cut, not the first 350 in order
    with pytest.raises(ValueError, match="at least one"):
        disjoint_windows(360, 0, rng)


def test_the_rate_interval_holds_the_true_rate_at_least_95_percent_of_the_time_for_every_rate():
    """Exact coverage over 7 windows (and 3, and 1): Clopper-Pearson never falls below 95%. (Wilson's would: 84%
    at a rate near 2.5% over 7 windows.)"""
    rates = np.linspace(0.001, 0.999, 999)
    for windows in (1, 3, 7):
        intervals = np.array([rate_interval(k, windows) for k in range(windows + 1)])
        for true in rates:
            held = (intervals[:, 0] <= true) & (true <= intervals[:, 1])
            assert binom.pmf(np.arange(windows + 1), windows, true)[held].sum() >= 0.95 - 1e-9, (windows, true)
    assert rate_interval(0, 7) == pytest.approx((0.0, 0.410), abs=5e-4)  # as README states them
    assert rate_interval(7, 7) == pytest.approx((0.590, 1.0), abs=5e-4)


def test_the_profile_round_trips_through_json_and_npz(reference, tmp_path):
    rng = np.random.default_rng(15)
    probabilities, _, images = synthetic(rng, 120)
    calibrated = calibrate(reference, probabilities, images, window_sizes=(50,), source="test split")
    calibrated.save(tmp_path / "reference")
    loaded = ReferenceProfile.load(tmp_path / "reference")
    for name in ("probabilities", "labels", "image_mean", "image_std", "pixels", "pixel_mean", "pixel_var"):
        assert np.array_equal(getattr(loaded, name), getattr(calibrated, name)), name
    for name in ("image_shape", "bandwidth", "class_names", "latency", "source", "calibration_source"):
        assert getattr(loaded, name) == getattr(calibrated, name), name
    assert np.array_equal(loaded.calibration[50], calibrated.calibration[50])
    window = synthetic(rng, LIVE)
    before = drift_report(calibrated, window[0], window[2], rng=np.random.default_rng(0))
    after = drift_report(loaded, window[0], window[2], rng=np.random.default_rng(0))
    assert after.p_values == before.p_values and after.false_alarms == before.false_alarms

    summary = json.loads((tmp_path / "reference" / JSON_FILE).read_text())  # what a person reads
    assert summary["accuracy"] == pytest.approx(calibrated.accuracy)
    assert summary["latency"] == {"latency_p99_ms": 0.5}
    stored = summary["calibration"]["false_alarms"]["50"]
    assert stored["windows"] == 2 and stored["interval"] == pytest.approx(list(calibrated.false_alarms(50).interval))


def test_a_missing_or_foreign_profile_is_refused_with_what_to_do(reference, tmp_path):
    with pytest.raises(ProfileError, match=ARRAYS_FILE):
        ReferenceProfile.load(tmp_path / "nothing")
    reference.save(tmp_path / "reference")
    meta = json.loads((tmp_path / "reference" / JSON_FILE).read_text())
    (tmp_path / "reference" / JSON_FILE).write_text(json.dumps({**meta, "format": 99}))
    with pytest.raises(ProfileError, match="format"):
        ReferenceProfile.load(tmp_path / "reference")
