"""Fashion-MNIST read with torchvision's idx parser from the four original files (no download at training time).

``--data_path`` is either the folder holding the files directly, as the Debian package ``dataset-fashion-mnist``
installs them, or torchvision's layout below it::

    <root>/train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz],
           t10k-labels-idx1-ubyte[.gz]
    <root>/FashionMNIST/raw/<the same files>       (torchvision.datasets.FashionMNIST(<root>, download=True))

Nothing is written into the data folder, which may be read-only (``/usr/share/datasets/fashion-mnist``): a gzipped
file is decompressed into a temporary folder of the system's temp directory for torchvision's reader.
"""
from __future__ import annotations

import gzip
import os
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torchvision.datasets import FashionMNIST
from torchvision.datasets.mnist import read_image_file, read_label_file

from fine.errors import UserError

FASHION_MNIST_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                       "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
FASHION_MNIST_CLASSES = tuple(FashionMNIST.classes)  # T-shirt/top, Trouser, Pullover, ..., Ankle boot
TORCHVISION_FOLDER = Path("FashionMNIST", "raw")
_FIX = ("install the files with `apt-get install dataset-fashion-mnist` and pass --data_path "
        "/usr/share/datasets/fashion-mnist, or download them with torchvision.datasets.FashionMNIST(<dir>, "
        "download=True) and pass --data_path <dir>")
# What torchvision's parser raises on a malformed file: its asserts (dimension count, type code, size), an unknown
# type code, the wrong dtype or rank, or a payload that does not fill the declared shape.
_PARSE_ERRORS = (AssertionError, KeyError, TypeError, ValueError, RuntimeError)


@dataclass
class FashionMnistData:
    """Fashion-MNIST as uint8 arrays: ``*_images`` (N, 1, 28, 28), ``*_labels`` (N,) int64, the class names."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: list[str]


def _find(folder: Path, name: str) -> Path | None:
    """``folder/name``, else ``folder/name.gz``, else None (a plain file is preferred: it needs no decompression)."""
    for path in (folder / name, folder / f"{name}.gz"):
        if path.is_file():
            return path
    return None


def fashion_mnist_folder(root: str | os.PathLike) -> Path:
    """The folder holding the idx files: ``root`` itself if it has any of them, else ``root/FashionMNIST/raw``."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"Fashion-MNIST folder {root} does not exist; {_FIX}")
    names = [name for pair in FASHION_MNIST_FILES.values() for name in pair]
    for folder in (root, root / TORCHVISION_FOLDER):
        if any(_find(folder, name) for name in names):
            return folder
    raise UserError(f"Fashion-MNIST not found: no *-idx?-ubyte[.gz] files in {root} or {root / TORCHVISION_FOLDER}; "
                    f"{_FIX}")


def _read(folder: Path, name: str, reader: Callable[[str], torch.Tensor]) -> torch.Tensor:
    """Parse one idx file (plain or gzipped) with torchvision's ``reader``; a bad file is a one-line UserError."""
    path = _find(folder, name)
    if path is None:
        raise UserError(f"Fashion-MNIST file {folder / name}[.gz] is missing; {_FIX}")
    if path.suffix != ".gz":
        try:
            return reader(str(path))
        except _PARSE_ERRORS as err:
            raise UserError(f"Fashion-MNIST file {path} is corrupt ({type(err).__name__}); {_FIX}") from None
    try:
        with gzip.open(path, "rb") as f:
            content = f.read()
    except (gzip.BadGzipFile, EOFError, zlib.error) as err:
        raise UserError(f"Fashion-MNIST file {path} is not a valid gzip file ({type(err).__name__}); {_FIX}") from None
    # torchvision's reader takes a path to an uncompressed file; the copy goes to the temp directory, never next to
    # the (possibly read-only) data.
    with tempfile.TemporaryDirectory(prefix="fashion_mnist_") as tmp:
        plain = Path(tmp, name)
        plain.write_bytes(content)
        try:
            return reader(str(plain))
        except _PARSE_ERRORS as err:
            raise UserError(f"Fashion-MNIST file {path} is corrupt ({type(err).__name__}); {_FIX}") from None


def _read_split(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(N, 1, 28, 28) uint8 images and (N,) int64 labels of ``split`` ("train" or "test"), checked."""
    image_name, label_name = FASHION_MNIST_FILES[split]
    images = _read(folder, image_name, read_image_file)
    labels = _read(folder, label_name, read_label_file)
    if images.shape[1:] != (28, 28):
        raise UserError(f"Fashion-MNIST file {folder / image_name} holds {tuple(images.shape[1:])} images, not 28x28; "
                        f"{_FIX}")
    if len(images) != len(labels):
        raise UserError(f"Fashion-MNIST {split} files in {folder} hold {len(images)} images but {len(labels)} labels; "
                        f"{_FIX}")
    if len(labels) and int(labels.max()) >= len(FASHION_MNIST_CLASSES):
        raise UserError(f"Fashion-MNIST file {folder / label_name} has label {int(labels.max())}, outside [0, 10); "
                        f"{_FIX}")
    return images.numpy()[:, None], labels.numpy()


def load_fashion_mnist(root: str | os.PathLike) -> FashionMnistData:
    """Read Fashion-MNIST from ``root`` (the idx files directly, or ``root/FashionMNIST/raw``).

    Returns the files' order (60,000 training images, 10,000 test images in the originals), which is the standard
    training order noisy label files follow.
    """
    folder = fashion_mnist_folder(root)
    train_images, train_labels = _read_split(folder, "train")
    test_images, test_labels = _read_split(folder, "test")
    return FashionMnistData(train_images=train_images, train_labels=train_labels, test_images=test_images,
                            test_labels=test_labels, classes=list(FASHION_MNIST_CLASSES))
