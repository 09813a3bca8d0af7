"""Image files become model inputs by one set of rules, shared by training and serving (steps.datasets.images).

Each test builds an image, computes the pixels it must give by hand (numpy,
not the code under test), and compares: gray and colour, 8 and 16 bits, alpha,
EXIF orientation, resizing (a large JPEG decoded at a fraction of its size),
the formats refused, and that no byte string makes the decoder fail with
anything but ImageError.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from steps.datasets.data import load_dataset
from steps.datasets.images import ImageError, decode_image

RNG = np.random.default_rng(3)


def encode(pixels: np.ndarray, format: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=format, **options)
    return buffer.getvalue()


def luma(rgb: np.ndarray) -> np.ndarray:
    return (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2])[..., np.newaxis]


def test_an_8_bit_grayscale_png_is_its_pixels_over_255():
    gray = RNG.integers(0, 256, (6, 5), dtype=np.uint8)
    pixels = decode_image(encode(gray), (6, 5, 1))
    assert pixels.dtype == np.float32 and pixels.shape == (6, 5, 1)
    np.testing.assert_array_equal(pixels[..., 0], gray / np.float32(255))


def test_a_16_bit_grayscale_png_is_scaled_by_65535_not_clamped_at_255():
    gray = RNG.integers(0, 65536, (6, 5), dtype=np.uint16)
    pixels = decode_image(encode(gray), (6, 5, 1))
    np.testing.assert_allclose(pixels[..., 0], gray / 65535, rtol=1e-6)
    assert pixels.max() <= 1.0 and (pixels < 0.99).mean() > 0.9  # Pillow's convert("L") made most pixels 1.0
    np.testing.assert_allclose(decode_image(encode(gray), (6, 5, 3)), np.repeat(pixels, 3, axis=-1))


def test_colour_to_one_channel_is_the_luma_and_gray_to_three_repeats_it():
    rgb = RNG.integers(0, 256, (4, 7, 3), dtype=np.uint8)
    np.testing.assert_allclose(decode_image(encode(rgb), (4, 7, 1)), luma(rgb / 255), rtol=1e-6)
    np.testing.assert_array_equal(decode_image(encode(rgb), (4, 7, 3)), rgb / np.float32(255))
    gray = RNG.integers(0, 256, (4, 7), dtype=np.uint8)
    repeated = np.repeat(gray[..., np.newaxis] / np.float32(255), 3, axis=-1)
    np.testing.assert_array_equal(decode_image(encode(gray), (4, 7, 3)), repeated)


def test_alpha_is_ignored_the_colour_under_it_counts():
    rgba = RNG.integers(0, 256, (5, 5, 4), dtype=np.uint8)
    rgba[0, 0, 3] = 0  # fully transparent
    np.testing.assert_array_equal(decode_image(encode(rgba), (5, 5, 3)), rgba[..., :3] / np.float32(255))
    np.testing.assert_allclose(decode_image(encode(rgba), (5, 5, 1)), luma(rgba[..., :3] / 255), rtol=1e-6)


def test_a_jpeg_gives_the_pixels_its_decoder_gives():
    rgb = RNG.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    data = encode(rgb, "JPEG", quality=90)
    decoded = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    np.testing.assert_array_equal(decode_image(data, (8, 8, 3)), decoded / np.float32(255))


def test_a_large_jpeg_is_decoded_at_a_fraction_of_its_size_then_resized_like_any_image():
    photo = np.asarray(Image.fromarray(RNG.integers(0, 256, (12, 16, 3), dtype=np.uint8)).resize((1600, 1200)))
    data = encode(photo, "JPEG", quality=90)
    with Image.open(io.BytesIO(data)) as drafted:  # what draft mode gives: 1/8 scale, 200x150, not 1600x1200
        drafted.draft("RGB", (96, 96))
        expected = np.asarray(drafted.convert("RGB").resize((96, 96), Image.Resampling.BILINEAR)) / np.float32(255)
        assert drafted.size == (200, 150)
    pixels = decode_image(data, (96, 96, 3))
    np.testing.assert_array_equal(pixels, expected)
    full = np.asarray(Image.open(io.BytesIO(data)).convert("RGB").resize((96, 96), Image.Resampling.BILINEAR))
    assert np.abs(pixels - full / 255).mean() < 0.01  # the same picture as a full decode, to the eye


def test_exif_orientation_turns_a_sideways_photo_upright():
    gray = RNG.integers(0, 256, (4, 6), dtype=np.uint8)  # 4 rows, 6 columns as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to view"
    pixels = decode_image(encode(gray, "PNG", exif=exif), (6, 4, 1))
    np.testing.assert_array_equal(pixels[..., 0], np.rot90(gray, k=-1) / np.float32(255))


def test_resizing_is_bilinear_before_the_channel_conversion():
    rgb = RNG.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    resized = np.asarray(Image.fromarray(rgb).resize((6, 4), Image.Resampling.BILINEAR))
    np.testing.assert_allclose(decode_image(encode(rgb), (4, 6, 1)), luma(resized / 255), rtol=1e-6)


@pytest.mark.parametrize(
    "data, words",
    [
        (b"", "empty"),
        (b"GIF89a not really", "not a readable PNG or JPEG"),
        (encode(np.zeros((2, 2), np.uint8), "GIF"), "GIF is not supported"),
        (encode(np.zeros((2, 2), np.uint8), "BMP"), "BMP is not supported"),
        (encode(RNG.integers(0, 256, (20, 20), dtype=np.uint8))[:200], "not a readable PNG or JPEG"),
    ],
    ids=["empty", "garbage", "gif", "bmp", "truncated"],
)
def test_what_is_not_a_png_or_jpeg_is_refused_with_the_reason(data, words):
    with pytest.raises(ImageError, match=words):
        decode_image(data, (4, 4, 1))


def test_an_image_over_the_pixel_limit_is_refused_before_its_pixels_are_decoded():
    data = encode(np.zeros((300, 400), np.uint8))
    with pytest.raises(ImageError, match="400x300 pixels, over the limit of 100000"):
        decode_image(data, (8, 8, 1), max_pixels=100_000)
    assert decode_image(data, (8, 8, 1), max_pixels=120_000).shape == (8, 8, 1)


def test_only_1_or_3_channels_are_made():
    with pytest.raises(ImageError, match="1 \\(gray\\) or 3 \\(RGB\\)"):
        decode_image(encode(np.zeros((2, 2), np.uint8)), (2, 2, 4))


@settings(max_examples=300, deadline=None)
@given(
    data=st.one_of(
        st.binary(max_size=300),
        st.binary(max_size=200).map(lambda tail: encode(np.zeros((3, 3), np.uint8))[:40] + tail),
        st.binary(max_size=200).map(lambda tail: b"\xff\xd8\xff\xe0" + tail),  # a JPEG start, then anything
    )
)
def test_no_bytes_make_the_decoder_fail_otherwise_than_with_image_error(data):
    try:
        pixels = decode_image(data, (4, 4, 3), max_pixels=1_000_000)
    except ImageError:
        return
    assert pixels.shape == (4, 4, 3) and 0 <= pixels.min() and pixels.max() <= 1


def test_the_image_folder_loader_decodes_like_the_server(tmp_path):
    """Training sees what /predict will see: 16-bit scans scaled, not clamped; a gray folder stays one channel."""
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        for i in range(6):
            gray = RNG.integers(0, 65536, (8, 8), dtype=np.uint16)
            (tmp_path / label / f"{i}.png").write_bytes(encode(gray))
    data = load_dataset(str(tmp_path), image_size=8)
    assert data.input_shape == (8, 8, 1)
    every = np.concatenate([data.x_train, data.x_val, data.x_test])
    assert every.max() <= 1.0 and (every < 0.99).mean() > 0.9
    stored = sorted(tmp_path.rglob("*.png"))
    served = {decode_image(path.read_bytes(), (8, 8, 1)).tobytes() for path in stored}
    assert {sample.tobytes() for sample in every} == served
