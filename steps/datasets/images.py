"""Image files to model inputs: one decoding shared by training (`steps.datasets.data`) and serving (`/predict`).

numpy and Pillow only, so the server can import it. A PNG or JPEG becomes
float32 pixels in [0, 1] shaped (height, width, channels), by the same rules on
both sides, so that a model sees at serving what it saw in training:
  - a JPEG several times larger than the model's input is decoded at a fraction of its size (Pillow's
    draft mode: a 4000x3000 photo costs a 500x375 decode, not a full one and a resize);
  - turned upright by its EXIF orientation (phone cameras store photos sideways);
  - resized bilinearly to (height, width), before any channel conversion;
  - 8-bit pixels are divided by 255; 16-bit grayscale by 65535 (Pillow's
    convert("L") would clamp them at 255, turning most of the image white);
  - colour to one channel is ITU-R 601 luma, 0.299 R + 0.587 G + 0.114 B, in float;
  - gray to three channels repeats the gray value;
  - alpha is ignored (the colour stored under it counts), as in Pillow's
    convert and Keras' load_img.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps

FORMATS = ("PNG", "JPEG")
GRAY_MODES = ("1", "L", "LA", "La")
SIXTEEN_BIT_GRAY_MODES = ("I;16", "I;16B", "I;16L", "I")  # Pillow opens 16-bit grayscale PNGs as I;16
LUMA = np.array([0.299, 0.587, 0.114], np.float32)


class ImageError(ValueError):
    """Bytes that are not a usable PNG or JPEG image; the message says why."""


def decode_image(data: bytes, shape: tuple[int, int, int], *, max_pixels: int | None = None) -> np.ndarray:
    """PNG/JPEG bytes -> float32 pixels in [0, 1] shaped `shape` (height, width, channels of 1 or 3).

    max_pixels refuses larger images before their pixels are decoded (a
    small compressed file can hold a huge image).
    """
    height, width, channels = shape
    if channels not in (1, 3):
        raise ImageError(f"images decode to 1 (gray) or 3 (RGB) channels, not {channels}")
    if not data:
        raise ImageError("the image is empty; send a PNG or JPEG file")
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format not in FORMATS:
                raise ImageError(f"image format {image.format} is not supported; send PNG or JPEG")
            if max_pixels is not None and image.width * image.height > max_pixels:
                raise ImageError(
                    f"the image is {image.width}x{image.height} pixels, over the limit of {max_pixels}; "
                    f"send it smaller (the model takes {width}x{height})"
                )
            if image.format == "JPEG":  # libjpeg decodes at 1/2, 1/4 or 1/8 scale, still at least the size asked
                image.draft(image.mode, (max(width, height),) * 2)  # (square: EXIF may turn it by 90 degrees)
            ImageOps.exif_transpose(image, in_place=True)
            return _to_unit_pixels(image, (width, height), channels)
    except ImageError:
        raise
    except Exception as error:  # Pillow fails on broken files in many ways (OSError, SyntaxError, ValueError...)
        raise ImageError(f"not a readable PNG or JPEG image ({type(error).__name__}: {error})") from error


def _to_unit_pixels(image: Image.Image, size: tuple[int, int], channels: int) -> np.ndarray:
    if image.mode in SIXTEEN_BIT_GRAY_MODES:
        gray = _resized(image.convert("F"), size)
        pixels = np.asarray(gray, np.float32)[..., np.newaxis] / np.float32(65535)
        return pixels if channels == 1 else np.repeat(pixels, 3, axis=-1)
    if channels == 1 and image.mode in GRAY_MODES:
        return np.asarray(_resized(image.convert("L"), size), np.float32)[..., np.newaxis] / np.float32(255)
    rgb = np.asarray(_resized(image.convert("RGB"), size), np.float32) / np.float32(255)
    return rgb if channels == 3 else (rgb @ LUMA)[..., np.newaxis]


def _resized(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    return image if image.size == size else image.resize(size, Image.Resampling.BILINEAR)
