"""An image folder is decoded once per image_size: later loads (main's other steps) read the decoded pixels
back, identical to a fresh decode; any change to the files decodes again, and a damaged or unwritable cache
only costs a decode."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest
from PIL import Image

from steps.datasets import folder_cache
from steps.datasets.data import load_dataset


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(folder_cache.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache" / "image-folders"


def photos(root, sixteen_bit=False):
    rng = np.random.default_rng(3)
    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)
        for i in range(6):
            if sixteen_bit:
                Image.fromarray(rng.integers(0, 65536, (20, 30), dtype=np.uint16)).save(root / name / f"{i}.png")
            else:
                pixels = rng.integers(0, 256, (40 + 10 * i, 30, 3), dtype=np.uint8)  # mixed sizes
                Image.fromarray(pixels).save(root / name / f"{i}.{'png' if i % 2 else 'jpg'}")
    return root


def loads(folder, caplog, image_size=16):
    with caplog.at_level(logging.INFO, logger="steps.datasets.data"):
        caplog.clear()
        data = load_dataset(str(folder), image_size=image_size)
    decoded = any(record.getMessage().startswith("decoded") for record in caplog.records)
    return data, decoded


def same(a, b) -> bool:
    return all(np.array_equal(getattr(a, key), getattr(b, key)) for key in ("x_train", "y_train", "x_test", "y_test"))


def test_the_second_load_reads_what_the_first_decoded_as_uint8_and_gives_the_same_pixels(tmp_path, cache, caplog):
    folder = photos(tmp_path / "photos")
    first, decoded_first = loads(folder, caplog)
    second, decoded_second = loads(folder, caplog)
    assert (decoded_first, decoded_second) == (True, False)
    assert same(first, second) and second.x_train.dtype == np.float32
    (entry,) = cache.glob("*.npz")
    with np.load(entry) as stored:
        assert stored["pixels"].dtype == np.uint8  # a quarter of float32's bytes


def test_another_image_size_or_a_changed_file_decodes_again(tmp_path, cache, caplog):
    folder = photos(tmp_path / "photos")
    loads(folder, caplog)
    assert loads(folder, caplog, image_size=12)[1]
    Image.fromarray(np.zeros((30, 30, 3), np.uint8)).save(folder / "cat" / "0.jpg")  # rewritten in place
    os.utime(folder / "cat" / "0.jpg", ns=(1, 1))  # even with a stale mtime: its size changed
    changed, decoded = loads(folder, caplog)
    assert decoded and np.isclose(changed.x_train, 0).all(axis=(1, 2, 3)).any()
    (folder / "dog" / "5.png").unlink()
    assert loads(folder, caplog)[1]


def test_sixteen_bit_images_are_kept_as_float_so_the_cache_changes_no_pixel(tmp_path, cache, caplog):
    folder = photos(tmp_path / "deep", sixteen_bit=True)
    first, _ = loads(folder, caplog)
    second, decoded = loads(folder, caplog)
    assert not decoded and same(first, second)


def test_a_damaged_entry_is_decoded_again_and_an_unwritable_cache_only_warns(tmp_path, cache, caplog, monkeypatch):
    folder = photos(tmp_path / "photos")
    first, _ = loads(folder, caplog)
    (entry,) = cache.glob("*.npz")
    entry.write_bytes(b"half a file")
    again, decoded = loads(folder, caplog)
    assert decoded and same(first, again)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv(folder_cache.CACHE_ENV, str(blocker))
    with caplog.at_level(logging.WARNING):
        unwritable, decoded = loads(folder, caplog)
    assert decoded and same(first, unwritable)
    assert any(folder_cache.CACHE_ENV in record.getMessage() for record in caplog.records)
