"""CIFAR-10 and CIFAR-100 readers for the official python-pickle layout (no download at training time).

Expected files (``bash scripts/download_cifar.sh <root>`` fetches them)::

    <root>/cifar-10-batches-py/data_batch_1 ... data_batch_5, test_batch, batches.meta
    <root>/cifar-100-python/train, test, meta
"""
from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fine.errors import UserError

CIFAR_LAYOUT = {
    "cifar10": {"folder": "cifar-10-batches-py", "train": [f"data_batch_{i}" for i in range(1, 6)],
                "test": ["test_batch"], "meta": "batches.meta", "label_key": "labels", "names_key": "label_names",
                "num_classes": 10},
    "cifar100": {"folder": "cifar-100-python", "train": ["train"], "test": ["test"], "meta": "meta",
                 "label_key": "fine_labels", "names_key": "fine_label_names", "num_classes": 100},
}


@dataclass
class CifarData:
    """One CIFAR data set: ``*_images`` (N, 3, 32, 32) uint8, ``*_labels`` (N,) int64, class names."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: list[str]


def _read_pickle(path: Path, root: Path) -> dict:
    """Unpickle one CIFAR file into a dict with str keys (the originals have bytes keys)."""
    fix = f"re-download it with: bash scripts/download_cifar.sh {root}"
    if not path.is_file():
        raise UserError(f"CIFAR file {path} is missing; {fix}")
    try:
        with open(path, "rb") as f:
            content = pickle.load(f, encoding="bytes")
    except Exception as err:  # any failure to unpickle means a damaged file
        raise UserError(f"CIFAR file {path} is corrupt ({type(err).__name__}); {fix}") from None
    if not isinstance(content, dict):
        raise UserError(f"CIFAR file {path} does not hold a dict; {fix}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in content.items()}


def _read_batches(paths: list[Path], label_key: str, num_classes: int, root: Path) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for path in paths:
        batch = _read_pickle(path, root)
        try:
            data = np.asarray(batch["data"])
            target = np.asarray(batch[label_key])
        except KeyError as err:
            raise UserError(f"CIFAR file {path} lacks the key {err}; re-download it with: "
                            f"bash scripts/download_cifar.sh {root}") from None
        well_formed = (data.dtype == np.uint8 and data.shape[1:] == (3072,) and target.shape == (len(data),)
                       and np.issubdtype(target.dtype, np.integer))
        if not well_formed or (target.size and (target.min() < 0 or target.max() >= num_classes)):
            raise UserError(f"CIFAR file {path} holds unexpected data (data {data.shape} {data.dtype}, "
                            f"labels {target.shape}); re-download it with: bash scripts/download_cifar.sh {root}")
        images.append(data.reshape(-1, 3, 32, 32))  # rows are 1024 red, 1024 green, 1024 blue values: CHW order
        labels.append(target.astype(np.int64))
    return np.concatenate(images), np.concatenate(labels)


def load_cifar(name: str, root: str | os.PathLike) -> CifarData:
    """Read CIFAR-10 (``name="cifar10"``) or CIFAR-100 (``"cifar100"``, fine labels) from ``root``.

    Returns the standard orders: training batches 1..5 concatenated (CIFAR-10) or the ``train`` file (CIFAR-100),
    which is the order noisy label files follow, and the test set.
    """
    layout = CIFAR_LAYOUT[name]
    root = Path(root)
    folder = root / layout["folder"]
    if not folder.is_dir():
        raise UserError(f"{name} not found: looked for {folder}; run: bash scripts/download_cifar.sh {root}")
    train_images, train_labels = _read_batches([folder / f for f in layout["train"]], layout["label_key"],
                                               layout["num_classes"], root)
    test_images, test_labels = _read_batches([folder / f for f in layout["test"]], layout["label_key"],
                                             layout["num_classes"], root)
    meta = _read_pickle(folder / layout["meta"], root)
    names = meta.get(layout["names_key"], [])
    classes = [n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names]
    if len(classes) != layout["num_classes"]:
        raise UserError(f"CIFAR file {folder / layout['meta']} lists {len(classes)} class names, expected "
                        f"{layout['num_classes']}; re-download it with: bash scripts/download_cifar.sh {root}")
    return CifarData(train_images=train_images, train_labels=train_labels, test_images=test_images,
                     test_labels=test_labels, classes=classes)
