"""Tiny CIFAR-10/100 data sets written in the real python-pickle layout (and Fashion-MNIST ones in the real idx
format, :func:`write_fashion_mnist`), for tests of loaders and trainers.

The files have the originals' names, keys (bytes, e.g. ``b'data'``, ``b'labels'``/``b'fine_labels'``) and encodings
(uint8 rows of 3072 values in CHW order, labels as Python int lists), pickled with protocol 2. Usage::

    root = write_cifar10(tmp_path, n_train=100, n_test=20, seed=0)
    build_datasets("cifar10", root, ...)
    expected = cifar_arrays(10, n_train=100, n_test=20, seed=0)  # what was written
"""
from __future__ import annotations

import gzip
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@dataclass
class CifarArrays:
    """Contents of a fixture: ``*_data`` (N, 3072) uint8 rows as written, ``*_labels`` (N,) int64."""

    train_data: np.ndarray
    train_labels: np.ndarray
    test_data: np.ndarray
    test_labels: np.ndarray


def cifar_arrays(num_classes: int, *, n_train: int, n_test: int, seed: int) -> CifarArrays:
    """The random images and labels a fixture with these arguments holds.

    Labels cycle through the classes and are then shuffled, so every class has ``n // num_classes`` or one more
    samples; images are uniform random bytes.
    """
    rng = np.random.default_rng(seed)

    def labels(n: int) -> np.ndarray:
        return rng.permutation(np.arange(n) % num_classes).astype(np.int64)

    train_labels, test_labels = labels(n_train), labels(n_test)
    return CifarArrays(train_data=rng.integers(0, 256, (n_train, 3072), dtype=np.uint8), train_labels=train_labels,
                       test_data=rng.integers(0, 256, (n_test, 3072), dtype=np.uint8), test_labels=test_labels)


def _dump(path: Path, content: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(content, f, protocol=2)


def _batch(name: str, data: np.ndarray, labels: np.ndarray, label_key: bytes, extra: dict | None = None) -> dict:
    return {b"batch_label": name.encode(), label_key: [int(v) for v in labels], b"data": data,
            b"filenames": [f"image_{i:05d}.png".encode() for i in range(len(data))], **(extra or {})}


def write_cifar10(root: str | Path, *, n_train: int = 100, n_test: int = 20, seed: int = 0) -> Path:
    """Write ``<root>/cifar-10-batches-py/`` (data_batch_1..5, test_batch, batches.meta); returns ``root``.

    The training set is split over the five batches in order (``np.array_split``), so concatenating them gives
    ``cifar_arrays(10, ...)``.
    """
    root = Path(root)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    arrays = cifar_arrays(10, n_train=n_train, n_test=n_test, seed=seed)
    parts = np.array_split(np.arange(n_train), 5)
    for i, part in enumerate(parts, start=1):
        _dump(folder / f"data_batch_{i}", _batch(f"training batch {i} of 5", arrays.train_data[part],
                                                 arrays.train_labels[part], b"labels"))
    _dump(folder / "test_batch", _batch("testing batch 1 of 1", arrays.test_data, arrays.test_labels, b"labels"))
    _dump(folder / "batches.meta", {b"num_cases_per_batch": len(parts[0]), b"num_vis": 3072,
                                    b"label_names": [name.encode() for name in CIFAR10_CLASSES]})
    return root


def write_cifar100(root: str | Path, *, n_train: int = 500, n_test: int = 100, seed: int = 0) -> Path:
    """Write ``<root>/cifar-100-python/`` (train, test, meta) with fine and coarse labels; returns ``root``.

    Contents are ``cifar_arrays(100, ...)``; coarse labels are ``fine // 5`` (placeholders, unused by the loaders).
    """
    root = Path(root)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    arrays = cifar_arrays(100, n_train=n_train, n_test=n_test, seed=seed)
    for name, data, labels in (("train", arrays.train_data, arrays.train_labels),
                               ("test", arrays.test_data, arrays.test_labels)):
        coarse = {b"coarse_labels": [int(v) // 5 for v in labels]}
        _dump(folder / name, _batch(name, data, labels, b"fine_labels", coarse))
    _dump(folder / "meta", {b"fine_label_names": [f"class_{i:02d}".encode() for i in range(100)],
                            b"coarse_label_names": [f"superclass_{i:02d}".encode() for i in range(20)]})
    return root


def synthetic_features(n: int, d: int, c: int, noise: float, spread: float, seed: int = 0):
    """Each class has a direction; a clean sample is its class's direction (random scale) plus noise, a noisy
    sample labelled k comes from another class's direction. Returns features, noisy labels, is_clean."""
    rng = np.random.default_rng(seed)
    dirs = rng.normal(size=(c, d))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    true = rng.integers(0, c, n)
    noisy = true.copy()
    flip = rng.random(n) < noise
    noisy[flip] = (true[flip] + rng.integers(1, c, flip.sum())) % c
    feats = dirs[true] * rng.uniform(0.5, 1.5, (n, 1)) + spread * rng.normal(size=(n, d)) / np.sqrt(d)
    return torch.from_numpy(feats.astype(np.float32)), torch.from_numpy(noisy), torch.from_numpy(noisy == true)


@dataclass
class FashionArrays:
    """Contents of a Fashion-MNIST fixture: ``*_images`` (N, 28, 28) uint8, ``*_labels`` (N,) int64."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


def fashion_arrays(*, n_train: int, n_test: int, seed: int) -> FashionArrays:
    """The random images and labels a Fashion-MNIST fixture with these arguments holds (labels balanced as in
    :func:`cifar_arrays`)."""
    rng = np.random.default_rng(seed)
    train_labels = rng.permutation(np.arange(n_train) % 10).astype(np.int64)
    test_labels = rng.permutation(np.arange(n_test) % 10).astype(np.int64)
    return FashionArrays(train_images=rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
                         train_labels=train_labels,
                         test_images=rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8), test_labels=test_labels)


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array in the idx format (magic 0x0000080N with N dimensions, big-endian uint32 sizes, the
    bytes row-major), gzipped when ``path`` ends in ``.gz``."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    content = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path.write_bytes(gzip.compress(content) if path.suffix == ".gz" else content)


def write_fashion_mnist(root: str | Path, *, n_train: int = 60, n_test: int = 20, seed: int = 0, gz: bool = True,
                        torchvision_layout: bool = False) -> Path:
    """Write the four Fashion-MNIST idx files of ``fashion_arrays(...)``; returns ``root`` (the ``--data_path``).

    The files go into ``root`` itself (the Debian package's layout) or, with ``torchvision_layout``, into
    ``root/FashionMNIST/raw``; named ``*-idx?-ubyte.gz`` (gzipped) or ``*-idx?-ubyte``.
    """
    root = Path(root)
    folder = root / "FashionMNIST" / "raw" if torchvision_layout else root
    folder.mkdir(parents=True, exist_ok=True)
    arrays = fashion_arrays(n_train=n_train, n_test=n_test, seed=seed)
    suffix = ".gz" if gz else ""
    for prefix, images, labels in (("train", arrays.train_images, arrays.train_labels),
                                   ("t10k", arrays.test_images, arrays.test_labels)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels.astype(np.uint8))
    return root


def deny_writes_below(monkeypatch, folder: Path) -> None:
    """Make ``os.access`` refuse write access below ``folder``, as for a read-only mount (tests may run as root, whom
    mode bits do not stop)."""
    access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: (not (mode & os.W_OK and Path(path).is_relative_to(folder))
                                                          and access(path, mode)))
