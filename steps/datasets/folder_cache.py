"""Decoded image folders kept on disk, so that a folder is decoded once per `image_size`, not once per step
(and `dataset=shapes` drawn once per `image_size`: 20 s a step at 96 px).

`main` runs train, prune, cluster, quantize and evaluate as separate processes, each loading the data set:
thousands of photos would be decoded and resized five times over. The first load stores the decoded images
under a key made of the folder's path, every image's relative path, size and modification time, and
`image_size`; a later load with the same key reads them back, and any added, removed or changed file makes
a new key. Pixels are stored as uint8, a quarter of float32, whenever that is exact (8-bit PNGs and every
JPEG decode to multiples of 1/255); a folder with 16-bit images is stored as float32, so the cache never
changes a pixel. The cache lives in $RTDEPLOY_CACHE (default ~/.cache/rtdeploy); deleting it is always safe.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path

import numpy as np

CACHE_ENV = "RTDEPLOY_CACHE"
DECODER_VERSION = 2  # part of every key: bump when the decoding rules of steps.datasets.images change
log = logging.getLogger(__name__)


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "rtdeploy") / "image-folders"


def folder_key(folder: Path, files: list[Path], image_size: int) -> str:
    """Changes when any image is added, removed, renamed, rewritten or touched, or image_size changes."""
    digest = hashlib.sha256(f"{DECODER_VERSION}\n{folder.resolve()}\n{image_size}\n".encode())
    for file in files:
        status = file.stat()
        digest.update(f"{file.relative_to(folder)}\t{status.st_size}\t{status.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:32]


def drawn_key(recipe: str, image_size: int) -> str:
    """The key of a data set drawn by code: its recipe (generator version, seed, sizes) and `image_size`."""
    return hashlib.sha256(f"drawn\n{recipe}\n{image_size}\n".encode()).hexdigest()[:32]


def read(key: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(float32 images in [0, 1], labels) stored under key, or None when there are none (or they are damaged)."""
    path = cache_root() / f"{key}.npz"
    try:
        with np.load(path) as stored:
            pixels, labels = stored["pixels"], stored["labels"]
    except FileNotFoundError:
        return None
    except Exception as error:  # a damaged entry (a full disk, a killed writer) is decoded again, not fatal
        log.warning("ignoring the damaged image cache %s (%s)", path, error)
        return None
    images = pixels.astype(np.float32) / np.float32(255) if pixels.dtype == np.uint8 else pixels
    return images, labels


def write(key: str, images: np.ndarray, labels: np.ndarray) -> None:
    """Store float32 images in [0, 1] (as uint8 when exact) and labels; a cache that cannot be written is
    skipped with a warning (the data set is loaded all the same)."""
    codes = np.rint(images * np.float32(255))
    exact = np.array_equal(codes / np.float32(255), images)
    pixels = codes.astype(np.uint8) if exact else images
    root = cache_root()
    part = None
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=root, suffix=".npz.part", delete=False) as part:
            np.savez(part, pixels=pixels, labels=labels)
        os.replace(part.name, root / f"{key}.npz")  # readers see a whole file or none
    except OSError as error:
        log.warning("cannot keep decoded images in %s (%s); set %s to a writable folder", root, error, CACHE_ENV)
        if part is not None:
            Path(part.name).unlink(missing_ok=True)
