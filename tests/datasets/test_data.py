"""Data sets load from the built-in digits, a .npz file or an image folder, with seeded splits and clear errors."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
from PIL import Image

from steps.datasets.data import DatasetError, known_side, load_dataset


def _save_npz(path, n_train=60, n_test=20, shape=(6, 6), classes=3, dtype=np.uint8, **overrides):
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (n_train, *shape)).astype(dtype),
        "y_train": np.arange(n_train) % classes,
        "x_test": rng.integers(0, 256, (n_test, *shape)).astype(dtype),
        "y_test": np.arange(n_test) % classes,
    }
    arrays.update(overrides)
    np.savez(path, **arrays)
    return path


def _image_folder(root, classes=("cat", "dog"), per_class=8, color=False, size=(12, 10)):
    rng = np.random.default_rng(1)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            shape = (*size[::-1], 3) if color else size[::-1]
            pixels = rng.integers(0, 256, shape, dtype=np.uint8)
            suffix = ".png" if i % 2 else ".jpg"
            Image.fromarray(pixels).save(root / name / f"{i}{suffix}")
    return root


def test_digits_are_scaled_8x8x1_images_with_disjoint_seeded_splits():
    data = load_dataset("digits")
    assert data.input_shape == (8, 8, 1) and data.n_classes == 10
    assert len(data.x_train) + len(data.x_val) + len(data.x_test) == 1797
    assert 0.0 <= data.x_train.min() and data.x_train.max() <= 1.0
    assert data.x_train.dtype == np.float32
    assert set(np.unique(data.y_test)) == set(range(10))  # stratified
    assert data.representative().shape == (100, 8, 8, 1)
    again = load_dataset("digits")
    assert data.digest == again.digest and np.array_equal(data.x_test, again.x_test)
    assert load_dataset("digits", seed=7).digest != data.digest


def test_npz_grayscale_uint8_is_scaled_and_gets_a_validation_split(tmp_path):
    data = load_dataset(str(_save_npz(tmp_path / "d.npz")))
    assert data.input_shape == (6, 6, 1) and data.n_classes == 3
    assert len(data.x_test) == 20 and len(data.x_train) + len(data.x_val) == 60 and len(data.x_val) > 0
    assert data.x_train.max() <= 1.0 and data.x_train.max() > 0.9
    assert data.source.endswith("d.npz") and data.name == "d"


def test_npz_color_images_and_one_hot_labels(tmp_path):
    y_train = np.eye(3)[np.arange(60) % 3]
    path = _save_npz(tmp_path / "c.npz", shape=(5, 5, 3), y_train=y_train)
    data = load_dataset(str(path))
    assert data.input_shape == (5, 5, 3)
    assert sorted(np.unique(data.y_train)) == [0, 1, 2]


def test_npz_string_labels_become_class_indices(tmp_path):
    labels = np.array(["ant", "bee"])
    path = _save_npz(tmp_path / "s.npz", classes=2, y_train=labels[np.arange(60) % 2], y_test=labels[np.arange(20) % 2])
    data = load_dataset(str(path))
    assert data.class_names == ("ant", "bee")


def test_npz_with_a_validation_split_of_its_own_keeps_it(tmp_path):
    rng = np.random.default_rng(3)
    x_val, y_val = rng.integers(0, 256, (9, 6, 6)).astype(np.uint8), np.arange(9) % 3
    data = load_dataset(str(_save_npz(tmp_path / "v.npz", x_val=x_val, y_val=y_val)))
    assert len(data.x_train) == 60 and len(data.x_test) == 20
    assert np.array_equal(data.y_val, y_val) and np.allclose(data.x_val[..., 0], x_val / 255)


def test_npz_class_names_fix_the_class_order_and_the_labels_are_indices_into_them(tmp_path):
    names = np.array(["9", "10", "2"])  # not sorted: a model's own order, kept
    path = _save_npz(tmp_path / "n.npz", y_train=np.arange(60) % 2, y_test=np.arange(20) % 3, class_names=names)
    data = load_dataset(str(path))
    assert data.class_names == ("9", "10", "2") and data.n_classes == 3
    assert np.array_equal(data.y_test, np.arange(20) % 3), "a class absent from y_train still keeps its index"


def test_npz_logged_as_a_run_artifact_loads_by_its_uri(tmp_path, tracking):
    path = _save_npz(tmp_path / "logged.npz")
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(path), "data")
    uri = f"runs:/{run.info.run_id}/data/logged.npz"
    data = load_dataset(uri)
    assert data.source == uri and data.digest == load_dataset(str(path)).digest
    with pytest.raises(DatasetError, match="cannot be downloaded"):
        load_dataset(f"runs:/{run.info.run_id}/data/missing.npz")


def test_image_folder_gray_images_are_resized_to_one_channel(tmp_path):
    data = load_dataset(str(_image_folder(tmp_path / "imgs")), image_size=9)
    assert data.input_shape == (9, 9, 1)
    assert data.class_names == ("cat", "dog")
    assert len(data.x_train) + len(data.x_val) + len(data.x_test) == 16


def test_image_folder_color_images_keep_three_channels(tmp_path):
    data = load_dataset(str(_image_folder(tmp_path / "imgs", color=True)), image_size=7)
    assert data.input_shape == (7, 7, 3)


def _write(path, content: bytes):
    path.write_bytes(content)
    return path


def _npz_without_test(folder):
    np.savez(folder / "k.npz", x_train=np.zeros((20, 4, 4)), y_train=np.arange(20) % 2)
    return folder / "k.npz"


def _broken_image_folder(folder):
    root = _image_folder(folder / "imgs")
    (root / "dog" / "broken.png").write_bytes(b"\x89PNG but not really")
    return root


def _empty_class_folder(folder):
    root = _image_folder(folder / "imgs")
    (root / "emu").mkdir()
    return root


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: str(p / "missing.npz"), "not found"),
        (_npz_without_test, "lacks x_test, y_test"),
        (lambda p: str(_save_npz(p / "m.npz", y_train=np.zeros(59, int))), "x_train has 60 samples but y_train has 59"),
        (lambda p: str(_save_npz(p / "one.npz", classes=1)), "single class"),
        (lambda p: str(_save_npz(p / "flat.npz", shape=(36,))), "images must be"),
        (lambda p: _write(p / "bad.npz", b"not a zip"), "cannot read"),
        (lambda p: _write(p / "data.csv", b"1,2,3"), "not a .npz file"),
        (lambda p: _broken_image_folder(p), "cannot decode image"),
        (lambda p: _image_folder(p / "one", classes=("only",)), "at least two classes"),
        (lambda p: _empty_class_folder(p), "has no .png/.jpg/.jpeg images"),
        (lambda p: str(_save_npz(p / "half.npz", x_val=np.zeros((4, 6, 6)))), "both x_val and y_val"),
        (lambda p: str(_save_npz(p / "v.npz", x_val=np.zeros((4, 5, 5)), y_val=np.arange(4) % 3)), "x_val images"),
        (lambda p: str(_save_npz(p / "i.npz", class_names=np.array(["a", "b"]))), "class indices 0..1"),
    ],
    ids=[
        "missing",
        "keys",
        "lengths",
        "one-class",
        "not-images",
        "corrupt-npz",
        "wrong-suffix",
        "undecodable",
        "one-folder",
        "empty-class",
        "val-without-labels",
        "val-shape",
        "label-past-class-names",
    ],
)
def test_unusable_data_fails_with_a_message_naming_the_problem(tmp_path, make, message):
    with pytest.raises(DatasetError, match=message):
        load_dataset(str(make(tmp_path)))


def test_the_side_of_the_images_is_known_before_reading_them_except_for_a_npz(tmp_path):
    (tmp_path / "folder").mkdir()
    assert known_side("digits", 96) == 8
    assert known_side("shapes", 96) == 96 and known_side(str(tmp_path / "folder"), 64) == 64
    assert known_side(str(tmp_path / "data.npz"), 96) is None
    assert known_side("runs:/0123/data.npz", 96) is None
