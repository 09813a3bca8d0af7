"""Data sets by name or path, split the same way every time.

`load_dataset(spec)` takes:
  - "digits": scikit-learn's built-in 8x8 handwritten digits (no download);
  - "shapes": 10 classes of shapes and patterns on textured backgrounds, drawn at `image_size`
    (steps/datasets/shapes.py);
  - a .npz file with x_train, y_train, x_test, y_test (the layout of keras' mnist.npz), and optionally
    x_val, y_val (a validation split of its own, else one is split off x_train) and class_names (the
    classes in order; the y arrays are then indices into it);
  - a .npz logged as a run artifact, runs:/<run_id>/<path>.npz (how `update` passes its data to the steps);
  - a folder with one sub-folder of PNG/JPEG images per class.
Every source gives float32 images in [0, 1] shaped (N, H, W, C), integer labels
0..K-1, and seeded train / validation / test splits.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from steps.datasets import folder_cache
from steps.parameters import UsageError, is_missing

log = logging.getLogger(__name__)

DIGITS = "digits"
DIGITS_SIDE = 8
SHAPES = "shapes"
BUILT_IN = (DIGITS, SHAPES)
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
NPZ_VAL_KEYS = ("x_val", "y_val")  # optional, together
NPZ_CLASS_NAMES = "class_names"  # optional
RUN_ARTIFACT_PREFIX = "runs:/"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
TEST_FRACTION = 0.2  # of all samples, when the source has no test split of its own
VAL_FRACTION = 0.2  # of the training samples: early stopping, and choosing variants within an accuracy budget
# (on digits 287 samples, so the default 0.5-point budget admits one lost sample; at 10% it admitted none)
REPRESENTATIVE_SIZE = 100  # calibration samples for int8 quantization
MIN_SAMPLES = 10  # fewer cannot fill train, validation and test splits


class DatasetError(UsageError):
    """A data set that cannot be used; the message names the problem and the fix."""


@dataclass(frozen=True)
class Dataset:
    name: str  # "digits" or the file/folder name
    source: str  # where it came from, for lineage
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def representative(self, size: int = REPRESENTATIVE_SIZE) -> np.ndarray:
        """A small sample of the (already shuffled) training split, for calibration."""
        return self.x_train[:size]

    @property
    def digest(self) -> str:
        """Content hash of all splits: equal digests mean equal data."""
        sha = hashlib.sha256()
        for array in (self.x_train, self.y_train, self.x_val, self.y_val, self.x_test, self.y_test):
            sha.update(str(array.shape).encode())
            sha.update(np.ascontiguousarray(array).tobytes())
        return sha.hexdigest()[:16]


def load_dataset(spec: str, *, image_size: int = 28, seed: int = 42) -> Dataset:
    """Load a data set by name or path (see module doc) with deterministic splits."""
    check_dataset(spec)
    if spec == DIGITS:
        return _load_digits(seed)
    if spec == SHAPES:
        return _load_shapes(image_size, seed)
    if spec.startswith(RUN_ARTIFACT_PREFIX):
        return _load_run_artifact(spec, seed)
    path = Path(spec).expanduser()
    return _load_image_folder(path, image_size, seed) if path.is_dir() else _load_npz(path, seed)


def check_dataset(spec: str) -> None:
    """What can be told of a data set without reading it: a known name, a run's .npz, an existing .npz or folder
    (so a stage that hands the data set to others, like main, refuses a mistake before they start)."""
    if spec in BUILT_IN:
        return
    if spec.startswith(RUN_ARTIFACT_PREFIX):
        if not spec.lower().endswith(".npz"):
            raise DatasetError(f"dataset {spec!r}: a run artifact data set must be a .npz file")
        return
    path = Path(spec).expanduser()
    if not path.exists():
        raise DatasetError(
            f"dataset {spec!r} not found: use {DIGITS!r} or {SHAPES!r}, a .npz file with "
            f"{', '.join(NPZ_KEYS)}, or a folder with one sub-folder of images per class"
        )
    if not path.is_dir() and path.suffix.lower() != ".npz":
        raise DatasetError(f"dataset file {path} is not a .npz file; give a .npz file or an image folder")


def known_side(spec: str, image_size: int) -> int | None:
    """The side of the data set's images, when it is known without reading the data: 8 for digits, image_size
    for shapes and image folders; None for a .npz, whose images are as large as they are."""
    if spec == DIGITS:
        return DIGITS_SIDE
    if spec == SHAPES or (not spec.startswith(RUN_ARTIFACT_PREFIX) and Path(spec).expanduser().is_dir()):
        return image_size
    return None


def _load_digits(seed: int) -> Dataset:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., np.newaxis]  # pixel values are 0..16
    y = digits.target.astype(np.int64)
    x_rest, x_test, y_rest, y_test = stratified_split(x, y, TEST_FRACTION, seed)
    names = tuple(str(label) for label in digits.target_names)
    return _with_validation(DIGITS, "sklearn.datasets.load_digits", x_rest, y_rest, x_test, y_test, names, seed)


def _load_shapes(image_size: int, seed: int) -> Dataset:
    from steps.datasets import shapes

    if image_size < 1:
        raise DatasetError(f"image_size must be >= 1, got {image_size}")
    key = folder_cache.drawn_key(shapes.recipe(), image_size)
    drawn = folder_cache.read(key)
    if drawn is None:
        log.info("drawing %d shapes of %d px", shapes.PER_CLASS * len(shapes.CLASSES), image_size)
        images, y = shapes.generate_shapes(image_size, shapes.PER_CLASS)
        drawn = images.astype(np.float32) / np.float32(255), y
        folder_cache.write(key, *drawn)
    x, y = drawn
    x_rest, x_test, y_rest, y_test = stratified_split(x, y, TEST_FRACTION, seed)
    source = f"steps.datasets.shapes (seed {shapes.SEED}, {shapes.PER_CLASS} per class, {image_size} px)"
    return _with_validation(SHAPES, source, x_rest, y_rest, x_test, y_test, shapes.CLASSES, seed)


def _load_run_artifact(uri: str, seed: int) -> Dataset:
    """A .npz logged to the tracking store: downloaded, read into memory, the download removed."""
    import tempfile

    import mlflow  # only here: every other source needs no tracking store

    with tempfile.TemporaryDirectory() as folder:
        try:
            path = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=folder))
        except Exception as error:  # MlflowException, OSError
            if not is_missing(error):  # refused credentials or no answer: run_cli says which, and the fix
                raise
            raise DatasetError(f"dataset {uri!r} cannot be downloaded ({error}); check the run id and path") from error
        return _load_npz(path, seed, source=uri)


def _load_npz(path: Path, seed: int, source: str | None = None) -> Dataset:
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [key for key in NPZ_KEYS if key not in archive.files]
            if missing:
                raise DatasetError(
                    f"{path} lacks {', '.join(missing)} (has {', '.join(archive.files) or 'nothing'}); "
                    f"a dataset .npz needs {', '.join(NPZ_KEYS)}, like keras' mnist.npz"
                )
            optional = [key for key in (*NPZ_VAL_KEYS, NPZ_CLASS_NAMES) if key in archive.files]
            arrays = {key: archive[key] for key in (*NPZ_KEYS, *optional)}
    except DatasetError:
        raise
    except Exception as error:  # zipfile/pickle/format errors all mean the same to a user
        raise DatasetError(f"cannot read {path} as a .npz archive ({error}); save it with numpy.savez") from error

    has_val = [key in arrays for key in NPZ_VAL_KEYS]
    if any(has_val) and not all(has_val):
        raise DatasetError(f"{path}: give both x_val and y_val (a validation split of its own), or neither")
    splits = ("train", "val", "test") if all(has_val) else ("train", "test")
    for split in splits:
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if len(x) != len(y):
            raise DatasetError(f"{path}: x_{split} has {len(x)} samples but y_{split} has {len(y)}; they must match")
    images = {split: _image_array(arrays[f"x_{split}"], f"{path}: x_{split}") for split in splits}
    for split in splits[1:]:
        if images[split].shape[1:] != images["train"].shape[1:]:
            raise DatasetError(
                f"{path}: x_train images are {images['train'].shape[1:]} but x_{split} images are "
                f"{images[split].shape[1:]}"
            )
    images = dict(zip(splits, _scale_to_unit(*images.values())))
    labels = {split: _as_labels(arrays[f"y_{split}"]) for split in splits}
    if NPZ_CLASS_NAMES in arrays:
        names = _indexed_labels(labels, arrays[NPZ_CLASS_NAMES], str(path))
    else:
        names = _encode_labels(labels, str(path))
    _require_enough(len(labels["train"]), str(path))
    source = source or str(path.resolve())
    if "val" not in images:
        return _with_validation(
            path.stem, source, images["train"], labels["train"], images["test"], labels["test"], names, seed
        )
    return Dataset(
        path.stem,
        source,
        images["train"],
        labels["train"],
        images["val"],
        labels["val"],
        images["test"],
        labels["test"],
        names,
    )


def _indexed_labels(labels: dict[str, np.ndarray], class_names: np.ndarray, what: str) -> tuple[str, ...]:
    """Labels given as indices into class_names: checked, left as they are; returns the names."""
    names = tuple(str(name) for name in np.asarray(class_names).reshape(-1).tolist())
    if len(names) < 2:
        raise DatasetError(f"{what}: class_names has {len(names)} class(es); a classifier needs at least two")
    for split, y in labels.items():
        if not np.issubdtype(y.dtype, np.integer) or (len(y) and (y.min() < 0 or y.max() >= len(names))):
            raise DatasetError(f"{what}: with class_names, y_{split} must hold class indices 0..{len(names) - 1}")
        labels[split] = y.astype(np.int64)
    return names


def _load_image_folder(folder: Path, image_size: int, seed: int) -> Dataset:
    if image_size < 1:
        raise DatasetError(f"image_size must be >= 1, got {image_size}")
    class_dirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(class_dirs) < 2:
        raise DatasetError(
            f"{folder} has {len(class_dirs)} class sub-folder(s); an image folder needs one sub-folder "
            "of PNG/JPEG images per class, and at least two classes"
        )
    files_of_class = []
    for class_dir in class_dirs:
        files = sorted(p for p in class_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DatasetError(f"class folder {class_dir} has no .png/.jpg/.jpeg images")
        files_of_class.append(files)
    key = folder_cache.folder_key(folder, [file for files in files_of_class for file in files], image_size)
    decoded = folder_cache.read(key)
    if decoded is None:
        decoded = _decode_folder(files_of_class, image_size)
        folder_cache.write(key, *decoded)
        log.info("decoded %d images of %d classes from %s", len(decoded[1]), len(class_dirs), folder)
    else:
        log.info(
            "read %d images of %d classes of %s decoded earlier (cache %s)",
            len(decoded[1]),
            len(class_dirs),
            folder,
            key,
        )
    x, y = decoded
    _require_enough(len(y), str(folder))
    x_rest, x_test, y_rest, y_test = stratified_split(x, y, TEST_FRACTION, seed)
    names = tuple(p.name for p in class_dirs)
    return _with_validation(folder.name, str(folder.resolve()), x_rest, y_rest, x_test, y_test, names, seed)


def _decode_folder(files_of_class: list[list[Path]], image_size: int) -> tuple[np.ndarray, np.ndarray]:
    from steps.datasets.images import ImageError, decode_image

    images, labels = [], []
    for label, files in enumerate(files_of_class):
        for file in files:
            try:  # as RGB, to see whether any image has colour; the server's /predict decodes the same way
                images.append(decode_image(file.read_bytes(), (image_size, image_size, 3)))
            except (ImageError, OSError) as error:
                raise DatasetError(f"cannot decode image {file} ({error}); remove or replace the file") from error
            labels.append(label)
    x = np.stack(images)
    # Keep one channel unless some image really has color: digits and scans stay small models.
    if np.array_equal(x[..., 0], x[..., 1]) and np.array_equal(x[..., 0], x[..., 2]):
        x = x[..., :1]
    return x, np.asarray(labels, dtype=np.int64)


def _image_array(x: np.ndarray, what: str) -> np.ndarray:
    if x.ndim == 3:
        x = x[..., np.newaxis]
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise DatasetError(f"{what} has shape {x.shape}; images must be (N, H, W) grayscale or (N, H, W, 1|3)")
    if not np.issubdtype(x.dtype, np.number):
        raise DatasetError(f"{what} has dtype {x.dtype}; pixels must be numbers")
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise DatasetError(f"{what} contains NaN or infinite pixels; clean the data first")
    return x


def _scale_to_unit(*splits: np.ndarray) -> list[np.ndarray]:
    """Pixels above 1 are taken as 0..255 (or 0..max) and scaled to [0, 1]; [0, 1] data is kept."""
    high = max(float(s.max()) for s in splits)
    scale = 1.0 if high <= 1.0 else (255.0 if high <= 255.0 else high)
    return [s / np.float32(scale) for s in splits]


def _as_labels(y: np.ndarray) -> np.ndarray:
    if y.ndim == 2 and y.shape[1] > 1:  # one-hot
        return y.argmax(axis=1)
    return y.reshape(len(y))


def _encode_labels(labels: dict[str, np.ndarray], what: str) -> tuple[str, ...]:
    """Labels of any values, per split, become indices into the sorted classes of the train split (in place);
    returns the class names."""
    classes = np.unique(labels["train"])
    if len(classes) < 2:
        raise DatasetError(f"{what}: y_train has a single class ({classes[0]!r}); a classifier needs at least two")
    for split, y in labels.items():
        unseen = np.setdiff1d(np.unique(y), classes)
        if len(unseen):
            raise DatasetError(f"{what}: y_{split} has labels never seen in y_train: {unseen[:10].tolist()}")
    encode = {value: index for index, value in enumerate(classes.tolist())}
    as_index = np.vectorize(encode.__getitem__, otypes=[np.int64])
    labels.update({split: as_index(y) for split, y in labels.items()})
    return tuple(str(c) for c in classes.tolist())


def _require_enough(n: int, what: str) -> None:
    if n < MIN_SAMPLES:
        raise DatasetError(f"{what}: {n} training samples is too few; at least {MIN_SAMPLES} are needed")


def stratified_split(x, y, fraction: float, seed: int):
    """(x_rest, x_part, y_rest, y_part) with `fraction` in the part: stratified when every class present has
    enough samples, a plain shuffled split otherwise."""
    counts = np.unique(y, return_counts=True)[1]
    stratify = y if counts.min() >= 2 and round(len(y) * fraction) >= len(counts) else None
    return train_test_split(x, y, test_size=fraction, random_state=seed, stratify=stratify)


def _with_validation(name, source, x_rest, y_rest, x_test, y_test, class_names, seed) -> Dataset:
    x_train, x_val, y_train, y_val = stratified_split(x_rest, y_rest, VAL_FRACTION, seed)
    return Dataset(name, source, x_train, y_train, x_val, y_val, x_test, y_test, class_names)
