"""The LiteRT runtime: any batch form in, float probabilities out, int8 models included."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tf_keras as keras

from steps.modeling.architectures import build_model
from steps.modeling.convert import to_tflite
from steps.modeling.litert_runtime import InputError, LiteRTClassifier, to_batch
from tests.support.tflite_graph import float_ops

SHAPE = (8, 8, 1)


@pytest.fixture(scope="module")
def tiny_model():
    keras.utils.set_random_seed(0)
    model = build_model("cnn", SHAPE, 10, width=4)
    x = np.random.default_rng(0).random((64, *SHAPE), dtype=np.float32)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, np.arange(64) % 10, epochs=2, verbose=0)
    return model, x


def _classifier(tmp_path, model, mode="none", representative=None, integer_io=False) -> LiteRTClassifier:
    path = tmp_path / f"{mode}.tflite"
    path.write_bytes(to_tflite(model, mode, representative, integer_io))
    return LiteRTClassifier.from_file(str(path))


def test_float32_deployable_matches_keras_probabilities(tmp_path, tiny_model):
    model, x = tiny_model
    classifier = _classifier(tmp_path, model)
    assert classifier.sample_shape == SHAPE and classifier.n_classes == 10 and classifier.fixed_batch is None
    np.testing.assert_allclose(classifier.predict_proba(x), model.predict(x, verbose=0), atol=1e-5)


def test_int8_deployable_is_integer_inside_and_float_at_its_edges(tmp_path, tiny_model):
    model, x = tiny_model
    tflite = to_tflite(model, "int8", x[:32])
    assert float_ops(tflite) == []
    classifier = LiteRTClassifier(tflite)
    assert classifier.input_dtype == np.float32 and classifier.output_dtype == np.float32
    np.testing.assert_allclose(classifier.predict_proba(x), model.predict(x, verbose=0), atol=0.05)


def test_an_integer_io_deployable_takes_and_returns_floats(tmp_path, tiny_model):
    # what microcontroller runtimes want, and what int8 deployables registered before 2026-12 are
    model, x = tiny_model
    classifier = _classifier(tmp_path, model, "int8", representative=x[:32], integer_io=True)
    assert classifier.input_dtype == np.int8 and classifier.output_dtype == np.int8
    probabilities = classifier.predict_proba(x)
    assert probabilities.dtype == np.float32 and probabilities.shape == (64, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=0.05)  # dequantized softmax
    # Scales are applied: probabilities land near the float model's, not at raw int8 codes.
    assert np.abs(probabilities - model.predict(x, verbose=0)).mean() < 0.02


def test_batches_of_any_size_are_padded_or_chunked_and_answered_row_for_row(tmp_path, tiny_model):
    model, x = tiny_model
    x = np.concatenate([x, x[::-1]])  # 128 samples: over the largest interpreter batch, so chunked
    classifier = _classifier(tmp_path, model)
    expected = model.predict(x, verbose=0)
    for size in (1, 5, 64, 3, 100, 128):
        np.testing.assert_allclose(classifier.predict_proba(x[:size]), expected[:size], atol=1e-5)
    assert sorted(classifier._local.runners) == [1, 4, 8, 64]  # power-of-two interpreters, built once


def test_int8_batches_answer_as_single_samples_do(tmp_path, tiny_model):
    model, x = tiny_model
    classifier = _classifier(tmp_path, model, "int8", representative=x[:32])
    one_by_one = np.concatenate([classifier.predict_proba(sample[np.newaxis]) for sample in x[:7]])
    np.testing.assert_array_equal(classifier.predict_proba(x[:7]), one_by_one)


@pytest.mark.parametrize(
    "form",
    [
        lambda x: x,  # numpy in the model's shape
        lambda x: x.tolist(),  # nested lists (JSON "instances")
        lambda x: x.reshape(len(x), -1),  # flattened rows
        lambda x: pd.DataFrame(x.reshape(len(x), -1)),  # one column per pixel
        lambda x: pd.DataFrame({"images": list(x)}),  # one column of nested arrays
        lambda x: {"images": x},  # a single named input
    ],
    ids=["ndarray", "lists", "flat", "dataframe-columns", "dataframe-tensor-column", "named"],
)
def test_every_batch_form_gives_the_same_batch(form):
    x = np.random.default_rng(1).random((3, *SHAPE), dtype=np.float32)
    np.testing.assert_array_equal(to_batch(form(x), SHAPE), x)


def test_a_single_sample_without_batch_axis_is_a_batch_of_one():
    assert to_batch(np.zeros(SHAPE), SHAPE).shape == (1, *SHAPE)


@pytest.mark.parametrize(
    "data, message",
    [
        (np.zeros((2, 7, 7, 1)), "expected \\(n, 8, 8, 1\\)"),
        (np.zeros((0, 8, 8, 1)), "empty"),
        (np.full((1, 8, 8, 1), np.nan), "NaN"),
        ([["a"] * 64], "not a numeric array"),
        ([[1, 2], [3]], "not a numeric array"),
    ],
    ids=["shape", "empty", "nan", "strings", "ragged"],
)
def test_bad_batches_raise_input_errors_that_say_what_is_expected(data, message):
    with pytest.raises(InputError, match=message):
        to_batch(data, SHAPE)


def test_a_corrupt_tflite_file_fails_at_load_not_at_first_request(tmp_path):
    path = tmp_path / "corrupt.tflite"
    path.write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError):
        LiteRTClassifier.from_file(str(path))
