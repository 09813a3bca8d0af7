"""Drift statistics, the reference profile and simulated drift.

Fast tests check each statistic on synthetic data where the answer is known: p-values spread evenly under no
drift, tiny under an obvious one, the Bonferroni arithmetic, the profile's round trip through files, windows
without images, and that within one rate no sample is in two windows. The end-to-end tests train a digits
model and measure what README states: the false alarms of the profile's clean windows and the detection of
every simulated drift at its default severity, on 7 disjoint windows of 50 test samples each
(`pytest -s -m e2e tests/test_drift.py` prints the rates with their intervals).
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import pytest
from scipy.stats import binom, kstest, norm

import steps.monitoring.drift_rates
import steps.monitoring.reference_profile
from steps import contract
from steps.datasets.corruptions import DEFAULT_SEVERITY, SEVERITY_MEANING, apply_drift
from steps.monitoring.drift_rates import WINDOW, measure
from steps.monitoring.drift_statistics import (
    DEFAULT_ALPHA,
    PERMUTATIONS,
    class_test,
    downsample,
    median_distance,
    mmd_test,
    softmax_test,
    verdict,
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
    make_reference,
    pixel_heatmap,
    rate_interval,
)
from tests.support.commands import run_command

LIVE = 200  # samples in a window of the fast tests (the rates below are measured on windows of WINDOW)
# Most clean windows of 7 that may alarm, per alpha: what a true rate at the Bonferroni bound (alpha) exceeds in
# under 1% of runs (at 0.01: 2 or more of 7 in 0.2%; at 0.05: 3 or more in 0.4%). 7 windows cannot say more.
MAX_CLEAN_ALARMS = {DEFAULT_ALPHA: 1, 0.05: 2}
WEAKER_DRIFT = {"noise": 0.15, "invert": 0.1, "label": 0.3}  # README: missed in some windows of 50


# ---------------------------------------------------------------- synthetic data


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


@pytest.fixture(scope="module")
def reference():
    rng = np.random.default_rng(1)
    probabilities, labels, images = synthetic(rng, 288)
    return make_reference(probabilities, labels, images, latency={"latency_p99_ms": 0.5}, source="synthetic")


# ---------------------------------------------------------------- each statistic


def test_class_test_p_values_are_spread_evenly_without_drift_and_tiny_with_it():
    rng = np.random.default_rng(2)
    prior = rng.dirichlet(np.full(10, 5.0))
    p = np.array([class_test(rng.multinomial(288, prior), rng.multinomial(LIVE, prior)) for _ in range(400)])
    assert 0.02 <= (p < 0.05).mean() <= 0.09
    assert (p < 0.01).mean() <= 0.025
    skewed = prior.copy()
    skewed[:3] += 0.3
    assert class_test(rng.multinomial(288, prior), rng.multinomial(LIVE, skewed / skewed.sum())) < 1e-6


def test_class_test_ignores_classes_nobody_predicted_and_needs_two_classes():
    assert class_test(np.array([10, 0, 10]), np.array([5, 0, 5])) == pytest.approx(1.0)
    assert class_test(np.array([10, 0]), np.array([5, 0])) == 1.0


def test_softmax_test_is_bonferroni_over_classes_of_per_class_ks_p_values():
    rng = np.random.default_rng(3)
    reference, window = rng.random((288, 10)), rng.random((LIVE, 10))
    window[:, 4] = window[:, 4] ** 3  # one class's probabilities drift lower
    adjusted, per_class = softmax_test(reference, window)
    assert per_class.shape == (10,) and per_class.argmin() == 4
    assert adjusted == pytest.approx(min(1.0, 10 * per_class.min()))
    assert adjusted < 0.01


def test_softmax_test_per_class_p_values_are_uniform_without_drift():
    rng = np.random.default_rng(4)
    first_class = np.array([softmax_test(rng.random((288, 3)), rng.random((LIVE, 3)))[1][0] for _ in range(400)])
    # (KS statistics take discrete values, so the p-values are a discrete uniform: compare shares, not shapes)
    assert 0.02 <= (first_class < 0.05).mean() <= 0.08
    assert (first_class < 0.01).mean() <= 0.025
    assert 0.4 <= (first_class < 0.5).mean() <= 0.6


def test_mmd_p_values_are_uniform_without_drift_and_at_their_floor_with_an_obvious_shift():
    rng = np.random.default_rng(5)
    permutations = 199
    p = [mmd_test(rng.normal(size=(60, 16)), rng.normal(size=(40, 16)), 4.0, rng, permutations)[1] for _ in range(300)]
    assert min(p) >= 1 / (1 + permutations)  # (1 + k) / (1 + N): never zero
    assert kstest(p, "uniform").pvalue > 0.01
    assert 0.01 <= np.mean(np.array(p) <= 0.05) <= 0.1
    mmd, floor = mmd_test(rng.normal(size=(60, 16)), rng.normal(1.0, 1, (40, 16)), 4.0, rng, permutations)
    assert floor == 1 / (1 + permutations) and mmd > 0


def test_the_mmd_permutation_floor_is_below_the_per_test_level():
    assert PERMUTATIONS == 2000  # README's N
    assert 1 / (1 + PERMUTATIONS) < DEFAULT_ALPHA / len(contract.DRIFT_STATISTICS) / 5


def test_a_window_of_200_against_the_reference_takes_well_under_a_second(reference):
    rng = np.random.default_rng(6)
    probabilities, _, images = synthetic(rng, LIVE)
    drift_report(reference, probabilities, images)  # first call pays for imports and allocations
    start = time.perf_counter()
    drift_report(reference, probabilities, images)
    assert time.perf_counter() - start < 0.5


# ---------------------------------------------------------------- the verdict


def test_bonferroni_over_the_tests_that_ran():
    assert verdict([0.004, 0.5, 0.5], 0.01) == (False, pytest.approx(0.01 / 3), [False, False, False])
    assert verdict([0.003, 0.5, 0.5], 0.01) == (True, pytest.approx(0.01 / 3), [True, False, False])
    assert verdict([0.004, 0.5, None], 0.01) == (True, pytest.approx(0.01 / 2), [True, False, False])
    assert verdict([0.5, 0.001, float("nan")], 0.01)[1] == pytest.approx(0.005)


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


def test_per_pixel_tests_at_1_percent_would_alarm_in_about_half_of_clean_windows():
    """Why per-pixel differences are only a heatmap: 64 independent pixels tested at 1% each alarm in
    1 - 0.99**64 = 47% of clean windows (correlated pixels, as digits' are, somewhat fewer)."""
    rng = np.random.default_rng(20)
    noise = rng.random((288 + 300 * LIVE, 8, 8, 1)).astype(np.float32)
    profile = make_reference(np.full((288, 2), 0.5), np.zeros(288, int), noise[:288])
    extreme = norm.ppf(1 - 0.01 / 2)
    windows = noise[288:].reshape(300, LIVE, 8, 8, 1)
    share = np.mean([(np.abs(pixel_heatmap(profile, window)) > extreme).any() for window in windows])
    assert 1 - 0.99**64 == pytest.approx(0.47, abs=0.005) and share == pytest.approx(0.47, abs=0.1)


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


def test_drift_and_shifts_need_numpy_and_scipy_only():
    """`monitor` and `simulate` run them in light processes: nothing beyond what numpy and scipy load themselves."""
    probe = (
        "import sys, numpy, scipy.stats, scipy.ndimage; before = set(sys.modules); "
        "import steps.monitoring.reference_profile, steps.datasets.corruptions; "
        "print(sorted({m.split('.')[0] for m in set(sys.modules) - before} - set(sys.stdlib_module_names)))"
    )
    result = run_command([sys.executable, "-c", probe])
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "['steps']"


# ---------------------------------------------------------------- the profile


def test_downsampling_keeps_8x8_and_brings_larger_and_colour_images_to_the_same_grid():
    rng = np.random.default_rng(13)
    small = rng.random((5, 8, 8, 1)).astype(np.float32)
    assert np.array_equal(downsample(small), small.reshape(5, 64))
    large = rng.random((5, 28, 28, 1)).astype(np.float32)
    assert downsample(large).shape == (5, 64)
    colour = rng.random((5, 16, 16, 3)).astype(np.float32)
    assert downsample(colour).shape == (5, 192)
    assert downsample(colour).mean(axis=1) == pytest.approx(colour.mean(axis=(1, 2, 3)), abs=1e-6)


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


def test_the_clean_alarm_limits_are_what_a_rate_of_alpha_rarely_exceeds_over_7_windows():
    for alpha, most in MAX_CLEAN_ALARMS.items():
        assert binom.sf(most, 7, alpha) < 0.01 <= binom.sf(most - 1, 7, alpha)


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


# ---------------------------------------------------------------- simulated drift


@pytest.fixture(scope="module")
def digits_like():
    rng = np.random.default_rng(16)
    x = np.zeros((200, 8, 8, 1), np.float32)
    x[:, 2:6, 3:5] = rng.uniform(0.5, 1.0, (200, 4, 2, 1))  # a bright bar in the middle of a dark image
    return x, np.arange(200) % 10


def test_every_kind_has_a_default_severity_and_a_meaning():
    assert set(DEFAULT_SEVERITY) == set(SEVERITY_MEANING) == set(contract.DRIFTS)


@pytest.mark.parametrize("kind", contract.DRIFTS)
def test_each_drift_keeps_shape_type_and_range(kind, digits_like):
    x, y = digits_like
    drifted_x, drifted_y = apply_drift(x, y, kind, None, np.random.default_rng(0))
    assert drifted_x.shape == x.shape and drifted_x.dtype == np.float32 and drifted_y.shape == y.shape
    assert drifted_x.min() >= 0 and drifted_x.max() <= 1
    assert (kind == "none") == np.array_equal(drifted_x, x)
    assert not np.shares_memory(drifted_x, x)


def test_each_drift_does_what_its_severity_says(digits_like):
    x, y = digits_like
    rng = np.random.default_rng(0)
    grey = np.full_like(x, 0.5)
    assert np.std(apply_drift(grey, y, "noise", 0.1, rng)[0] - grey) == pytest.approx(0.1, rel=0.02)
    assert np.array_equal(apply_drift(x, y, "invert", 1.0, rng)[0], 1 - x)
    assert apply_drift(x, y, "dim", 0.3, rng)[0] == pytest.approx(0.7 * x)
    shifted, _ = apply_drift(x, y, "shift", 0.125, rng)  # one pixel on 8x8
    moved = [np.abs(np.subtract(*_centre(a, b))).sum() for a, b in zip(x, shifted)]
    assert np.allclose(moved, 1.0)
    turned, _ = apply_drift(x, y, "rotate", 90.0, rng)
    for before, after in zip(x, turned):
        assert any(np.allclose(after[..., 0], np.rot90(before[..., 0], k), atol=1e-5) for k in (1, -1))


def test_a_label_shift_lets_a_few_classes_dominate(digits_like):
    x, y = digits_like
    big_x, big_y = np.repeat(x, 10, axis=0), np.repeat(y, 10)
    _, shifted = apply_drift(big_x, big_y, "label", 0.6, np.random.default_rng(0))
    shares = np.sort(np.bincount(shifted, minlength=10) / len(shifted))[::-1]
    assert shares[:3].sum() == pytest.approx(0.6 + 0.4 * 0.3, abs=0.03)  # the dominant three, from 30%


def test_unknown_kinds_and_impossible_severities_are_refused(digits_like):
    x, y = digits_like
    with pytest.raises(ValueError, match="noise, shift"):
        apply_drift(x, y, "blur", 1.0)
    with pytest.raises(ValueError, match="between 0 and 1"):
        apply_drift(x, y, "invert", 1.5)
    with pytest.raises(ValueError, match=">= 0"):
        apply_drift(x, y, "noise", -0.1)


def _centre(a, b):
    grid = np.indices(a.shape[:2])
    return [(grid * image[..., 0]).sum(axis=(1, 2)) / image.sum() for image in (a, b)]


# ---------------------------------------------------------------- measured on a real model (e2e)


@pytest.fixture(scope="module")
def deployable():
    """A digits cnn trained as `train` trains it (fewer epochs), run by LiteRT as the server runs it."""
    from steps.datasets.data import load_dataset
    from steps.modeling.architectures import build_model
    from steps.modeling.convert import to_tflite
    from steps.modeling.litert_runtime import LiteRTClassifier
    from steps.modeling.training import train
    from steps.settings import TrainConfig

    data = load_dataset("digits")
    config = TrainConfig(epochs=15)
    trained = train(config, data, build_model(config.architecture, data.input_shape, data.n_classes, config.width))
    classifier = LiteRTClassifier(to_tflite(trained.model))
    reference = make_reference(
        classifier.predict_proba(data.x_val), data.y_val, data.x_val, class_names=data.class_names, source="val"
    )
    return classifier, data, reference


@pytest.mark.e2e
def test_clean_windows_of_the_test_split_rarely_raise_a_false_alarm(deployable):
    """The profile's calibration as `register` makes it: the 360 test samples cut into disjoint windows."""
    classifier, data, reference = deployable
    calibrated = calibrate(reference, classifier.predict_proba(data.x_test), data.x_test, source="test split")
    assert {size: len(p) for size, p in calibrated.calibration.items()} == {50: 7, 100: 3, 200: 1}
    print(f"\nfalse alarms of clean windows cut from {len(data.y_test)} test samples")
    for size in calibrated.calibration:
        print("  " + "; ".join(str(calibrated.false_alarms(size, alpha)) for alpha in MAX_CLEAN_ALARMS))
    for alpha, most in MAX_CLEAN_ALARMS.items():
        assert calibrated.false_alarms(WINDOW, alpha).false_alarms <= most


@pytest.mark.e2e
@pytest.mark.parametrize("kind", [kind for kind in contract.DRIFTS if kind != "none"])
def test_every_drift_at_its_default_severity_is_detected_in_every_window(deployable, kind):
    classifier, data, reference = deployable
    seed = contract.DRIFTS.index(kind)
    rate = measure(classifier.predict_proba, reference, data.x_test, data.y_test, kind, seed=seed)[DEFAULT_ALPHA]
    clean_accuracy = float((classifier.predict_proba(data.x_test).argmax(axis=1) == data.y_test).mean())
    print(
        f"\n{kind} severity {DEFAULT_SEVERITY[kind]}, windows of {WINDOW}: detected in {rate} "
        f"(by test: {rate.by_statistic}); accuracy {rate.accuracy:.3f}, clean {clean_accuracy:.3f}"
    )
    assert rate.windows == len(data.y_test) // WINDOW and rate.flagged == rate.windows
    if kind in ("dim", "label"):  # README: they barely change the accuracy, yet are seen
        assert rate.accuracy == pytest.approx(clean_accuracy, abs=0.02)
    if kind == "dim":  # the softmax and pixel tests see what the answers do not show
        statistics = rate.by_statistic
        assert statistics[contract.DRIFT_P_SOFTMAX] == statistics[contract.DRIFT_P_PIXELS] == rate.windows


@pytest.mark.e2e
@pytest.mark.parametrize("kind", WEAKER_DRIFT)
def test_weaker_drift_is_missed_in_some_windows(deployable, kind):
    classifier, data, reference = deployable
    seed = contract.DRIFTS.index(kind)
    rate = measure(classifier.predict_proba, reference, data.x_test, data.y_test, kind, WEAKER_DRIFT[kind], seed=seed)
    print(f"\n{kind} severity {WEAKER_DRIFT[kind]}: detected in {rate[DEFAULT_ALPHA]}")
    assert rate[DEFAULT_ALPHA].flagged < rate[DEFAULT_ALPHA].windows
