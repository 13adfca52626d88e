"""Users' own labelled data: an ImageFolder tree (``--dataset folder``) or one ``.npz`` file (``--dataset npz``).

Folder layout (torchvision ImageFolder; classes are the sorted sub-folder names of ``train/``)::

    DIR/train/<class>/*.png|jpg|...      training images; the folder is the label
    DIR/test/<class>/*.png|jpg|...       test images (class names a subset of train's)
    DIR/noisy_labels.npy                 optional (N,) int labels of the training images in the order below; when
                                         present they are the noisy labels and the folder labels the clean ones

Training images are ordered by class index, then by file name. Without ``noisy_labels.npy`` the folder labels are
the noisy labels and the clean labels are unknown. Images are decoded with PIL, converted to RGB and resized to
``IMAGE_SIZE`` x ``IMAGE_SIZE`` so the whole set lives in memory as uint8.

``.npz`` file (``numpy.savez``; read without pickle)::

    x_train        (N, ...) training inputs, one of the three kinds below
    y_train        (N,) labels training sees (the noisy ones), class ids 0..K-1
    y_train_clean  optional (N,) clean labels of the same samples
    x_test         (M, ...) test inputs, the same kind and per-sample shape as x_train
    y_test         (M,) test labels
    kind           optional string, "image", "table" or "signal"; inferred from x_train when absent

Kinds, and what is inferred without ``kind``:

- ``"image"``: uint8 (N, H, W) or (N, H, W, C) with C 1 or 3; inferred for uint8 arrays of 3 or 4 dimensions.
  Stored as (N, C, H, W) uint8; normalised per channel and augmented (random crop + flip) for training.
- ``"table"``: numeric (N, D), D features per sample; inferred for every 2-D array.
- ``"signal"``: numeric (N, C, L), C channels of length L; inferred for 3-D arrays that are not uint8. A 2-D array
  is a table unless ``kind="signal"`` is saved with it, which reads it as single-channel signals (N, 1, L)
  (``numpy.savez(path, ..., kind="signal")``, or store ``x[:, None, :]``).

Tables and signals are stored as float32 and standardised with the training split's mean and standard deviation
(per feature for tables, per channel for signals; see :class:`data_loader.transforms.Standardize`), the test set
with the same statistics; they are not augmented. Labels may be integers, or floats holding whole numbers (cast to
int64). NaN or infinite inputs are refused: impute or drop them before saving.

Degenerate labels (:func:`check_classes`): a training set of one class, or test labels of a class the training
labels lack, is refused; a class with fewer than 2 training samples is kept, with a warning (FINE keeps all its
samples: a 2-component mixture cannot split it).
"""
from __future__ import annotations

import os
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from fine.errors import UserError

IMAGE_SIZE = 32  # side of the square every folder image is resized to
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
NPZ_REQUIRED = ("x_train", "y_train", "x_test", "y_test")
KINDS = ("image", "table", "signal")
_NPZ_SHAPES = "uint8 images as (N, H, W) or (N, H, W, C) with C = 1 or 3, tables as (N, D) or signals as (N, C, L)"


@dataclass
class UserData:
    """A user's data set: ``kind`` one of :data:`KINDS`; ``*_inputs`` (N, C, H, W) uint8 images, (N, D) float32
    table rows or (N, C, L) float32 signals; ``train_labels`` the noisy labels, ``train_clean`` the clean ones or
    None; ``test_labels`` (M,) int64; ``num_classes`` K; ``classes`` K names."""

    kind: str
    train_inputs: np.ndarray
    train_labels: np.ndarray
    train_clean: np.ndarray | None
    test_inputs: np.ndarray
    test_labels: np.ndarray
    num_classes: int
    classes: list[str]


def _read_images(paths: list[Path], size: int) -> np.ndarray:
    """(N, 3, size, size) uint8 array of the RGB images at ``paths``."""
    out = np.empty((len(paths), 3, size, size), dtype=np.uint8)
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as image:
                rgb = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
        except (OSError, UnidentifiedImageError) as err:
            raise UserError(f"cannot read image {path} ({type(err).__name__}); remove or replace the file") from None
        out[i] = np.asarray(rgb).transpose(2, 0, 1)
    return out


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _labels_file(path: Path, n: int, num_classes: int) -> np.ndarray:
    """The (n,) int64 labels of ``noisy_labels.npy``, checked against the training set."""
    fix = "save n integer labels in the training order (class index, then file name) with numpy.save"
    try:
        labels = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise UserError(f"cannot read {path} ({err}); {fix}") from None
    if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
        raise UserError(f"{path} holds {labels.dtype} labels of shape {labels.shape} but the training folder has "
                        f"{n} images; {fix}")
    if n and (labels.min() < 0 or labels.max() >= num_classes):
        raise UserError(f"{path} holds labels in [{labels.min()}, {labels.max()}], outside [0, {num_classes}) for "
                        f"the {num_classes} class folders; {fix}")
    return labels.astype(np.int64)


def load_image_folder(root: str | os.PathLike, *, size: int = IMAGE_SIZE) -> UserData:
    """Read ``root/train/<class>/*`` and ``root/test/<class>/*`` (see the module docstring)."""
    root = Path(root)
    train_dir, test_dir = root / "train", root / "test"
    for folder in (train_dir, test_dir):
        if not folder.is_dir():
            raise UserError(f"--dataset folder needs {folder}/<class>/<images>; create it or pass the right "
                            f"--data_path")
    classes = sorted(p.name for p in train_dir.iterdir() if p.is_dir())
    if not classes:
        raise UserError(f"{train_dir} has no class folders; put the images of each class in {train_dir}/<class>/")
    paths, labels = [], []
    for k, name in enumerate(classes):
        files = _image_files(train_dir / name)
        if not files:
            raise UserError(f"class folder {train_dir / name} holds no images ({', '.join(IMAGE_SUFFIXES)}); add "
                            f"images or remove the folder")
        paths += files
        labels += [k] * len(files)
    index = {name: k for k, name in enumerate(classes)}
    test_paths, test_labels = [], []
    for folder in sorted(p for p in test_dir.iterdir() if p.is_dir()):
        if folder.name not in index:
            raise UserError(f"test class folder {folder} has no training folder {train_dir / folder.name}; use the "
                            f"training class names ({', '.join(classes)})")
        files = _image_files(folder)
        test_paths += files
        test_labels += [index[folder.name]] * len(files)
    if not test_paths:
        raise UserError(f"{test_dir} holds no images; put test images in {test_dir}/<class>/")
    folder_labels = np.asarray(labels, dtype=np.int64)
    noisy_file = root / "noisy_labels.npy"
    if noisy_file.exists():
        noisy, clean = _labels_file(noisy_file, len(paths), len(classes)), folder_labels
    else:
        noisy, clean = folder_labels, None
    return UserData(kind="image", train_inputs=_read_images(paths, size), train_labels=noisy, train_clean=clean,
                    test_inputs=_read_images(test_paths, size), test_labels=np.asarray(test_labels, dtype=np.int64),
                    num_classes=len(classes), classes=classes)


def _npz_kind(arrays: dict[str, np.ndarray], path: Path) -> str:
    """The saved ``kind``, or the kind ``x_train``'s dtype and dimensions imply (see the module docstring)."""
    if "kind" in arrays:
        value = arrays["kind"]
        name = value.item() if value.ndim == 0 and value.dtype.kind in "US" else None
        name = name.decode() if isinstance(name, bytes) else name
        if name not in KINDS:
            raise UserError(f"{path}: unknown kind {value.tolist()!r}; save kind as one of the strings "
                            f"{', '.join(KINDS)} (e.g. numpy.savez(..., kind=\"table\")) or leave it out")
        return name
    x = arrays["x_train"]
    if x.dtype == np.uint8 and x.ndim in (3, 4):
        return "image"
    if x.ndim == 2:
        return "table"
    if x.ndim == 3:
        return "signal"
    raise UserError(f"{path}: x_train is {x.dtype} of shape {x.shape}; store {_NPZ_SHAPES}")


def _npz_images(x: np.ndarray, key: str, path: Path) -> np.ndarray:
    """(N, H, W) or (N, H, W, C) uint8 -> (N, C, H, W) uint8."""
    if x.dtype != np.uint8 or x.ndim not in (3, 4) or (x.ndim == 4 and x.shape[3] not in (1, 3)):
        raise UserError(f"{path}: {key} is {x.dtype} of shape {x.shape}; store uint8 images as (N, H, W) or "
                        f"(N, H, W, C) with C = 1 or 3")
    if not len(x):
        raise UserError(f"{path}: {key} holds no images; store at least one")
    return np.ascontiguousarray(x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2))


def _npz_numeric(x: np.ndarray, key: str, kind: str, path: Path) -> np.ndarray:
    """Table rows (N, D) or signals (N, L) / (N, C, L) of any real dtype -> finite float32 (N, D) or (N, C, L)."""
    shapes = "(N, D)" if kind == "table" else "(N, C, L), or (N, L) for one channel"
    if x.dtype.kind not in "biuf" or x.ndim not in ((2,) if kind == "table" else (2, 3)):
        raise UserError(f"{path}: {key} is {x.dtype} of shape {x.shape} but kind is {kind}; store a numeric "
                        f"{shapes} array, or save the kind that matches it ({', '.join(KINDS)})")
    if not len(x):
        raise UserError(f"{path}: {key} holds no samples; store at least one")
    if not x.size:
        raise UserError(f"{path}: {key} has shape {x.shape}, with no values per sample; store at least one "
                        f"{'feature' if kind == 'table' else 'channel and time step'}")
    if x.dtype.kind == "f":
        nan, inf = int(np.isnan(x).sum()), int(np.isinf(x).sum())
        if nan or inf:
            raise UserError(f"{path}: {key} holds {nan} NaN and {inf} infinite values (of {x.size}); impute or "
                            f"drop them before saving")
    with np.errstate(over="ignore"):
        out = x.astype(np.float32)
    if not np.isfinite(out).all():
        raise UserError(f"{path}: {key} holds values beyond float32's range (|x| > 3.4e38); rescale them")
    return np.ascontiguousarray(out[:, None] if kind == "signal" and x.ndim == 2 else out)


def _check_test_shape(train: np.ndarray, test: np.ndarray, kind: str, path: Path) -> None:
    """x_test must have x_train's per-sample shape: image size and channels, feature count, signal shape."""
    if kind == "image" and train.shape[1:] != test.shape[1:]:
        raise UserError(f"{path}: x_train images are (C, H, W) = {train.shape[1:]} but x_test images are "
                        f"{test.shape[1:]}; store both at the same size and channel count")
    if kind == "table" and train.shape[1] != test.shape[1]:
        raise UserError(f"{path}: x_train has {train.shape[1]} features but x_test has {test.shape[1]}; store the "
                        f"same features, in the same order, in both")
    if kind == "signal" and train.shape[1] != test.shape[1]:
        raise UserError(f"{path}: x_train signals have {train.shape[1]} channels but x_test signals have "
                        f"{test.shape[1]}; store the same channels in both")
    if kind == "signal" and train.shape[2] != test.shape[2]:
        raise UserError(f"{path}: x_train signals have length {train.shape[2]} but x_test signals have length "
                        f"{test.shape[2]}; crop, pad or resample both to one length")


def _npz_labels(y: np.ndarray, key: str, n: int, path: Path) -> np.ndarray:
    """(n,) integer labels, or floats holding whole numbers, -> int64."""
    if y.shape != (n,) or y.dtype.kind not in "iuf":
        inputs = "x_test" if key == "y_test" else "x_train"
        raise UserError(f"{path}: {key} is {y.dtype} of shape {y.shape}, expected ({n},) integer labels, one per "
                        f"sample of {inputs}")
    if y.dtype.kind == "f":
        fractional = ~np.isfinite(y) | (y != np.round(y))
        if fractional.any():
            raise UserError(f"{path}: {key} has {int(fractional.sum())} of {n} labels that are not whole numbers "
                            f"(the first: {y[fractional][0]}); store class ids 0..K-1")
    if n and y.min() < 0:
        raise UserError(f"{path}: {key} holds negative labels; use class ids 0..K-1")
    return y.astype(np.int64)


def load_npz(path: str | os.PathLike) -> UserData:
    """Read a ``.npz`` of ``x_train``, ``y_train``, optional ``y_train_clean``, ``x_test``, ``y_test``, optional
    ``kind`` (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--dataset npz needs --data_path to be an existing .npz file; {path} is not a file")
    try:
        with np.load(path, allow_pickle=False) as content:
            arrays = {k: content[k] for k in content.files}
    except (OSError, ValueError, EOFError) as err:
        raise UserError(f"cannot read {path} as .npz ({err}); save it with numpy.savez") from None
    missing = [k for k in NPZ_REQUIRED if k not in arrays]
    if missing:
        raise UserError(f"{path} lacks the arrays {', '.join(missing)}; save x_train, y_train, x_test, y_test "
                        f"(and optionally y_train_clean) with numpy.savez")
    kind = _npz_kind(arrays, path)
    if kind == "image":
        train, test = (_npz_images(arrays[k], k, path) for k in ("x_train", "x_test"))
    else:
        train, test = (_npz_numeric(arrays[k], k, kind, path) for k in ("x_train", "x_test"))
    _check_test_shape(train, test, kind, path)
    noisy = _npz_labels(arrays["y_train"], "y_train", len(train), path)
    clean = (_npz_labels(arrays["y_train_clean"], "y_train_clean", len(train), path)
             if "y_train_clean" in arrays else None)
    test_labels = _npz_labels(arrays["y_test"], "y_test", len(test), path)
    num_classes = int(max(y.max() for y in (noisy, clean, test_labels) if y is not None and y.size)) + 1
    return UserData(kind=kind, train_inputs=train, train_labels=noisy, train_clean=clean, test_inputs=test,
                    test_labels=test_labels, num_classes=num_classes, classes=[str(k) for k in range(num_classes)])


def npz_kind(path: str | os.PathLike) -> str:
    """The kind of data (:data:`KINDS`) a ``.npz`` holds, read from its ``kind`` entry and ``x_train``'s header only
    (cheap on large files): what the trainers' recipes need before the data is loaded."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--dataset npz needs --data_path to be an existing .npz file; {path} is not a file")
    try:
        with zipfile.ZipFile(path) as archive, np.load(path, allow_pickle=False) as content:
            arrays = {"kind": content["kind"]} if "kind" in content.files else {}
            with archive.open("x_train.npy") as f:
                version = np.lib.format.read_magic(f)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, _, dtype = read_header(f)
    except KeyError:
        raise UserError(f"{path} lacks the array x_train; save x_train, y_train, x_test, y_test with "
                        f"numpy.savez") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise UserError(f"cannot read {path} as .npz ({err}); save it with numpy.savez") from None
    arrays["x_train"] = np.empty([0] * len(shape), dtype=dtype)  # what the inference looks at: dtype and ndim
    return _npz_kind(arrays, path)


def has_clean_labels(dataset: str, data_path: str | os.PathLike) -> bool:
    """Whether a user's data set holds clean training labels besides the ones training sees (an .npz's
    ``y_train_clean``, a folder's ``noisy_labels.npy``), read from the file list only; False for a missing path."""
    path = Path(data_path)
    if dataset == "folder":
        return (path / "noisy_labels.npy").is_file()
    try:
        with zipfile.ZipFile(path) as archive:
            return "y_train_clean.npy" in archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return False


def check_classes(data: UserData, source: str | os.PathLike) -> None:
    """Refuse labels no noisy-label method can learn from, and warn about classes too small to split.

    A :class:`UserError` when the training labels (noisy and clean together) hold a single class, or the test labels
    a class the training labels lack (no network can predict it); a ``UserWarning`` for each class with fewer than 2
    training samples under the labels training sees: a 2-component mixture cannot split it, so FINE keeps all its
    samples as clean (:func:`fine.selection.split_scores` warns again at every round).
    """
    train = set(np.unique(data.train_labels).tolist())
    if data.train_clean is not None:
        train |= set(np.unique(data.train_clean).tolist())
    if len(train) < 2:
        raise UserError(f"{source}: every training label is class {min(train, default=0)}, so there is no label "
                        f"noise to find and nothing to learn; store samples of at least two classes")
    unseen = sorted(set(np.unique(data.test_labels).tolist()) - train)
    if unseen:
        raise UserError(f"{source}: the test labels hold class(es) {', '.join(map(str, unseen))} that no training "
                        f"label has, which no network can predict; drop those test samples or add training samples "
                        f"of them")
    counts = np.bincount(data.train_labels, minlength=data.num_classes)
    small = [k for k in sorted(train) if counts[k] < 2]
    if small:
        warnings.warn(f"{source}: class(es) {', '.join(map(str, small))} have fewer than 2 training samples; a "
                      f"2-component mixture cannot split them, so FINE keeps all their samples", stacklevel=2)


def load_user_data(dataset: str, data_path: str | os.PathLike) -> UserData:
    """``load_image_folder(data_path)`` for ``dataset == "folder"``, ``load_npz(data_path)`` for ``"npz"``, checked
    with :func:`check_classes`."""
    data = load_image_folder(data_path) if dataset == "folder" else load_npz(data_path)
    check_classes(data, data_path)
    return data
