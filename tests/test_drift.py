"""Drift statistics, the reference profile and simulated drift.

Fast tests check each statistic on synthetic data where the answer is known: p-values spread evenly under no
drift, tiny under an obvious one, the Bonferroni arithmetic, the profile's round trip through files, windows
without images. The end-to-end tests train a digits model and measure what README states: the false-alarm
rate on clean held-out windows and the detection rate of every simulated drift at its default severity
(`pytest -s -m e2e tests/test_drift.py` prints both tables).
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import pytest
from scipy.stats import kstest

from conftest import run_command
from steps import contract
from steps.drift import (
    ARRAYS_FILE,
    DEFAULT_ALPHA,
    JSON_FILE,
    MIN_PIXEL_IMAGES,
    PERMUTATIONS,
    ProfileError,
    Reference,
    calibrate,
    class_test,
    downsample,
    drift_report,
    make_reference,
    mmd_test,
    softmax_test,
    verdict,
)
from steps.drift_rates import WINDOW, detection, false_alarms_against_redrawn_references
from steps.shifts import DEFAULT_SEVERITY, SEVERITY_MEANING, apply_drift

CLEAN_WINDOWS = 100  # at least 50
DRIFTED_WINDOWS = 40  # per kind: 95% is 38 of them
REDRAWN_REFERENCES = 400  # measured rate about 0.7%: then more than 2% (9 of 400) happens in 0.2% of runs
MAX_FALSE_ALARM_RATE = 0.02
MIN_DETECTION_RATE = 0.95


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
    p = np.array([class_test(rng.multinomial(288, prior), rng.multinomial(WINDOW, prior)) for _ in range(400)])
    assert 0.02 <= (p < 0.05).mean() <= 0.09
    assert (p < 0.01).mean() <= 0.025
    skewed = prior.copy()
    skewed[:3] += 0.3
    assert class_test(rng.multinomial(288, prior), rng.multinomial(WINDOW, skewed / skewed.sum())) < 1e-6


def test_class_test_ignores_classes_nobody_predicted_and_needs_two_classes():
    assert class_test(np.array([10, 0, 10]), np.array([5, 0, 5])) == pytest.approx(1.0)
    assert class_test(np.array([10, 0]), np.array([5, 0])) == 1.0


def test_softmax_test_is_bonferroni_over_classes_of_per_class_ks_p_values():
    rng = np.random.default_rng(3)
    reference, window = rng.random((288, 10)), rng.random((WINDOW, 10))
    window[:, 4] = window[:, 4] ** 3  # one class's probabilities drift lower
    adjusted, per_class = softmax_test(reference, window)
    assert per_class.shape == (10,) and per_class.argmin() == 4
    assert adjusted == pytest.approx(min(1.0, 10 * per_class.min()))
    assert adjusted < 0.01


def test_softmax_test_per_class_p_values_are_uniform_without_drift():
    rng = np.random.default_rng(4)
    first_class = np.array([softmax_test(rng.random((288, 3)), rng.random((WINDOW, 3)))[1][0] for _ in range(400)])
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
    assert 1 / (1 + PERMUTATIONS) < DEFAULT_ALPHA / len(contract.DRIFT_STATISTICS) / 5


def test_a_window_of_200_against_the_reference_takes_well_under_a_second(reference):
    rng = np.random.default_rng(6)
    probabilities, _, images = synthetic(rng, WINDOW)
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
    probabilities, _, images = synthetic(rng, WINDOW)
    clean = drift_report(reference, probabilities, images, rng=rng)
    assert not clean.drifted and clean.reasons == ()
    assert set(clean.p_values) == set(contract.DRIFT_STATISTICS) and clean.metrics() == clean.p_values
    assert clean.threshold == pytest.approx(DEFAULT_ALPHA / 3)

    probabilities, _, images = synthetic(rng, WINDOW, brightness=0.3)
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
    assert report.class_counts.sum() == WINDOW and report.class_counts[:3].sum() == 120


def test_without_images_the_pixel_test_is_not_run_and_not_drift(reference):
    rng = np.random.default_rng(9)
    probabilities, _, images = synthetic(rng, WINDOW)
    for kept in (None, images[:0], images[: MIN_PIXEL_IMAGES - 1]):
        report = drift_report(reference, probabilities, kept, rng=rng)
        assert report.p_values[contract.DRIFT_P_PIXELS] is None
        assert contract.DRIFT_P_PIXELS in report.not_run and contract.DRIFT_P_PIXELS not in report.metrics()
        assert not report.drifted and report.threshold == pytest.approx(DEFAULT_ALPHA / 2)
        assert report.heatmap is None and report.images == 0


def test_a_share_of_the_images_is_enough_for_the_pixel_test(reference):
    rng = np.random.default_rng(10)
    probabilities, _, images = synthetic(rng, WINDOW, brightness=0.3)
    report = drift_report(reference, probabilities, images[:40], rng=rng)  # e.g. log_inputs=0.2
    assert report.images == 40 and report.samples == WINDOW
    assert report.p_values[contract.DRIFT_P_PIXELS] < report.threshold


def test_logged_uint8_images_compare_like_held_out_floats(reference):
    rng = np.random.default_rng(11)
    probabilities, _, images = synthetic(rng, WINDOW)
    logged = np.round(images * 255).astype(np.uint8)  # what the prediction log keeps
    floats = drift_report(reference, probabilities, images, rng=np.random.default_rng(0))
    as_logged = drift_report(reference, probabilities, logged, rng=np.random.default_rng(0))
    assert as_logged.p_values == floats.p_values
    for layout in (logged.reshape(WINDOW, -1), logged[..., 0]):  # flattened; grey without a channel axis
        assert drift_report(reference, probabilities, layout, rng=np.random.default_rng(0)).p_values == floats.p_values


def test_traffic_that_does_not_fit_the_reference_is_refused(reference):
    rng = np.random.default_rng(12)
    probabilities, _, images = synthetic(rng, WINDOW)
    with pytest.raises(ProfileError, match="classes"):
        drift_report(reference, probabilities[:, :5], images)
    with pytest.raises(ProfileError, match="shaped"):
        drift_report(reference, probabilities, images[:, :6, :6])
    with pytest.raises(ValueError, match="empty"):
        drift_report(reference, probabilities[:0], None)
    with pytest.raises(ValueError, match="alpha"):
        drift_report(reference, probabilities, images, alpha=1.5)


def test_drift_and_shifts_load_without_tensorflow_or_mlflow():
    """`monitor` and `simulate` run them in light processes."""
    probe = "import sys, steps.drift, steps.shifts; print([m for m in ('tensorflow', 'mlflow') if m in sys.modules])"
    result = run_command([sys.executable, "-c", probe])
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"


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
    assert reference.bandwidth > 0 and reference.false_alarms(WINDOW) is None  # not calibrated yet


def test_calibration_stores_clean_p_values_and_states_the_false_alarm_rate_at_any_alpha(reference):
    rng = np.random.default_rng(14)
    probabilities, _, images = synthetic(rng, 150)
    calibrated = calibrate(reference, probabilities, images, window_sizes=(50, 100, 500), windows=20, rng=rng)
    assert set(calibrated.calibration) == {50, 100}  # 500 would need samples drawn twice
    assert calibrated.calibration[50].shape == (20, 3)
    measured = calibrated.false_alarms(60)
    assert (measured.window_size, measured.windows) == (50, 20) and measured.rate <= 0.1
    assert calibrated.false_alarms(400).window_size == 100
    loose = calibrated.false_alarms(100, alpha=0.6)  # recomputed from the stored p-values at any alpha
    assert loose.false_alarms == (calibrated.calibration[100] < 0.2).any(axis=1).sum() > 0
    report = drift_report(calibrated, probabilities[:90], None)
    assert report.false_alarms == calibrated.false_alarms(90, pixels=False)


def test_the_profile_round_trips_through_json_and_npz(reference, tmp_path):
    rng = np.random.default_rng(15)
    probabilities, _, images = synthetic(rng, 120)
    calibrated = calibrate(reference, probabilities, images, window_sizes=(50,), windows=5, source="test split")
    calibrated.save(tmp_path / "reference")
    loaded = Reference.load(tmp_path / "reference")
    for name in ("probabilities", "labels", "image_mean", "image_std", "pixels", "pixel_mean", "pixel_var"):
        assert np.array_equal(getattr(loaded, name), getattr(calibrated, name)), name
    for name in ("image_shape", "bandwidth", "class_names", "latency", "source", "calibration_source"):
        assert getattr(loaded, name) == getattr(calibrated, name), name
    assert np.array_equal(loaded.calibration[50], calibrated.calibration[50])
    window = synthetic(rng, WINDOW)
    before = drift_report(calibrated, window[0], window[2], rng=np.random.default_rng(0))
    after = drift_report(loaded, window[0], window[2], rng=np.random.default_rng(0))
    assert after.p_values == before.p_values and after.false_alarms == before.false_alarms

    summary = json.loads((tmp_path / "reference" / JSON_FILE).read_text())  # what a person reads
    assert summary["accuracy"] == pytest.approx(calibrated.accuracy)
    assert summary["latency"] == {"latency_p99_ms": 0.5}
    assert summary["calibration"]["false_alarms"]["50"]["windows"] == 5


def test_a_missing_or_foreign_profile_is_refused_with_what_to_do(reference, tmp_path):
    with pytest.raises(ProfileError, match=ARRAYS_FILE):
        Reference.load(tmp_path / "nothing")
    reference.save(tmp_path / "reference")
    meta = json.loads((tmp_path / "reference" / JSON_FILE).read_text())
    (tmp_path / "reference" / JSON_FILE).write_text(json.dumps({**meta, "format": 99}))
    with pytest.raises(ProfileError, match="format"):
        Reference.load(tmp_path / "reference")


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
    from steps.architectures import build_model
    from steps.convert import to_tflite
    from steps.data import load_dataset
    from steps.litert_runtime import LiteRTClassifier
    from steps.settings import TrainConfig
    from steps.training import train

    data = load_dataset("digits")
    config = TrainConfig(epochs=15)
    trained = train(config, data, build_model(config.architecture, data.input_shape, data.n_classes, config.width))
    classifier = LiteRTClassifier(to_tflite(trained.model))
    reference = make_reference(
        classifier.predict_proba(data.x_val), data.y_val, data.x_val, class_names=data.class_names, source="val"
    )
    return classifier, data, reference


@pytest.mark.e2e
def test_clean_held_out_windows_rarely_raise_a_false_alarm(deployable):
    classifier, data, reference = deployable
    calibrated = calibrate(
        reference,
        classifier.predict_proba(data.x_test),
        data.x_test,
        windows=CLEAN_WINDOWS,
        source="test split",
        rng=np.random.default_rng(0),
    )
    alphas = (DEFAULT_ALPHA, 0.05, 0.1)  # the looser ones show how much room the default leaves
    print(f"\nfalse alarms of clean windows drawn from {len(data.y_test)} test samples, at alpha {alphas}")
    for size in calibrated.calibration:
        rates = [calibrated.false_alarms(size, alpha) for alpha in alphas]
        print(f"  window {size:4d}: " + ", ".join(f"{a.false_alarms}/{a.windows}" for a in rates))
    measured = calibrated.false_alarms(WINDOW)
    assert measured.window_size == WINDOW and measured.windows >= 50
    assert measured.rate <= MAX_FALSE_ALARM_RATE


@pytest.mark.e2e
def test_independent_clean_windows_against_redrawn_references_alarm_at_about_alpha(deployable):
    """The windows above overlap in a pool of 360, so they vary less than live traffic and flatter the rate;
    here every window is independent of its reference (see `false_alarms_against_redrawn_references`)."""
    classifier, data, _ = deployable
    x, y = np.concatenate([data.x_val, data.x_test]), np.concatenate([data.y_val, data.y_test])
    alphas = (DEFAULT_ALPHA, 0.05, 0.1)
    rates = false_alarms_against_redrawn_references(
        classifier.predict_proba, x, y, len(data.y_val), REDRAWN_REFERENCES, alphas
    )
    shown = ", ".join(f"{rate.rate:.1%} at alpha {alpha}" for alpha, rate in rates.items())
    print(f"\nfalse alarms of {REDRAWN_REFERENCES} independent windows of {WINDOW} against redrawn references: {shown}")
    assert rates[DEFAULT_ALPHA].rate <= MAX_FALSE_ALARM_RATE


@pytest.mark.e2e
@pytest.mark.parametrize("kind", [kind for kind in contract.DRIFTS if kind != "none"])
def test_every_drift_at_its_default_severity_is_detected(deployable, kind):
    classifier, data, reference = deployable
    seed = contract.DRIFTS.index(kind)
    rate = detection(classifier.predict_proba, reference, data.x_test, data.y_test, kind, DRIFTED_WINDOWS, seed=seed)
    shares = ", ".join(f"{name} {n / rate.windows:.0%}" for name, n in rate.by_statistic.items())
    print(
        f"\n{kind} severity {DEFAULT_SEVERITY[kind]}: detected in {rate.rate:.0%} of {rate.windows} windows of "
        f"{WINDOW} ({shares}); accuracy {rate.accuracy:.3f}"
    )
    assert rate.rate >= MIN_DETECTION_RATE
