"""Users' own labelled images: an ImageFolder tree (``--dataset folder``) or one ``.npz`` file (``--dataset npz``).

Folder layout (torchvision ImageFolder; classes are the sorted sub-folder names of ``train/``)::

    DIR/train/<class>/*.png|jpg|...      training images; the folder is the label
    DIR/test/<class>/*.png|jpg|...       test images (class names a subset of train's)
    DIR/noisy_labels.npy                 optional (N,) int labels of the training images in the order below; when
                                         present they are the noisy labels and the folder labels the clean ones

Training images are ordered by class index, then by file name. Without ``noisy_labels.npy`` the folder labels are
the noisy labels and the clean labels are unknown. Images are decoded with PIL, converted to RGB and resized to
``IMAGE_SIZE`` x ``IMAGE_SIZE`` so the whole set lives in memory as uint8.

``.npz`` arrays: ``x_train`` (N, H, W) or (N, H, W, C) uint8, ``y_train`` (N,) noisy labels, optional
``y_train_clean`` (N,) clean labels, ``x_test`` (M, H, W[, C]) uint8 and ``y_test`` (M,) labels.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from fine.errors import UserError

IMAGE_SIZE = 32  # side of the square every folder image is resized to
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
NPZ_REQUIRED = ("x_train", "y_train", "x_test", "y_test")


@dataclass
class UserData:
    """A user's data set: ``*_images`` (N, C, H, W) uint8; ``train_labels`` the noisy labels, ``train_clean`` the
    clean ones or None; ``test_labels`` (M,) int64; ``num_classes`` K; ``classes`` K names."""

    train_images: np.ndarray
    train_labels: np.ndarray
    train_clean: np.ndarray | None
    test_images: np.ndarray
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
    return UserData(train_images=_read_images(paths, size), train_labels=noisy, train_clean=clean,
                    test_images=_read_images(test_paths, size), test_labels=np.asarray(test_labels, dtype=np.int64),
                    num_classes=len(classes), classes=classes)


def _npz_images(x: np.ndarray, key: str, path: Path) -> np.ndarray:
    """(N, H, W) or (N, H, W, C) uint8 -> (N, C, H, W) uint8."""
    if x.dtype != np.uint8 or x.ndim not in (3, 4) or (x.ndim == 4 and x.shape[3] not in (1, 3)):
        raise UserError(f"{path}: {key} is {x.dtype} of shape {x.shape}; store uint8 images as (N, H, W) or "
                        f"(N, H, W, C) with C = 1 or 3")
    if not len(x):
        raise UserError(f"{path}: {key} holds no images; store at least one")
    return np.ascontiguousarray(x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2))


def _npz_labels(y: np.ndarray, key: str, n: int, path: Path) -> np.ndarray:
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer):
        raise UserError(f"{path}: {key} is {y.dtype} of shape {y.shape}, expected ({n},) integer labels, one per "
                        f"image")
    if n and y.min() < 0:
        raise UserError(f"{path}: {key} holds negative labels; use class ids 0..K-1")
    return y.astype(np.int64)


def load_npz(path: str | os.PathLike) -> UserData:
    """Read a ``.npz`` of ``x_train``, ``y_train``, optional ``y_train_clean``, ``x_test``, ``y_test``."""
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
    train = _npz_images(arrays["x_train"], "x_train", path)
    test = _npz_images(arrays["x_test"], "x_test", path)
    if train.shape[1:] != test.shape[1:]:
        raise UserError(f"{path}: x_train images are (C, H, W) = {train.shape[1:]} but x_test images are "
                        f"{test.shape[1:]}; store both at the same size and channel count")
    noisy = _npz_labels(arrays["y_train"], "y_train", len(train), path)
    clean = (_npz_labels(arrays["y_train_clean"], "y_train_clean", len(train), path)
             if "y_train_clean" in arrays else None)
    test_labels = _npz_labels(arrays["y_test"], "y_test", len(test), path)
    num_classes = int(max(y.max() for y in (noisy, clean, test_labels) if y is not None and y.size)) + 1
    return UserData(train_images=train, train_labels=noisy, train_clean=clean, test_images=test,
                    test_labels=test_labels, num_classes=num_classes, classes=[str(k) for k in range(num_classes)])


def load_user_data(dataset: str, data_path: str | os.PathLike) -> UserData:
    """``load_image_folder(data_path)`` for ``dataset == "folder"``, ``load_npz(data_path)`` for ``"npz"``."""
    return load_image_folder(data_path) if dataset == "folder" else load_npz(data_path)
