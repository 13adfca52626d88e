"""Clothing1M (Xiao et al., CVPR 2015): 1M web images of 14 clothing classes with noisy labels, plus clean val/test.

Layout under ``root`` (as distributed by the authors; the annotation files may also sit directly in ``root``, as
DivideMix's loader expects)::

    images/0/00/xxx.jpg ...
    annotations/noisy_label_kv.txt        images/0/00/xxx.jpg 3      (noisy labels, ~1M lines)
    annotations/clean_label_kv.txt        (clean labels of ~72k images)
    annotations/noisy_train_key_list.txt  images/...                 (the noisy training set)
    annotations/clean_val_key_list.txt, annotations/clean_test_key_list.txt
"""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2

from data_loader.image_files import ImageFileDataset, read_file, read_pairs, require_dir
from data_loader.transforms import resize_crop_transforms
from fine.errors import UserError

NUM_CLASSES = 14
MEAN, STD = (0.6959, 0.6537, 0.6371), (0.3113, 0.3192, 0.3214)
Transform = Callable[[Image.Image], torch.Tensor] | None
SOURCE = "Clothing1M must be requested from its authors (Xiao et al. 2015, https://github.com/Cysu/noisy_label)"


def clothing1m_transforms() -> tuple[v2.Compose, v2.Compose]:
    """``(train, test)`` transforms from an RGB PIL image to a normalised float32 (3, 224, 224) tensor.

    Train: Resize(256) + RandomCrop(224) + RandomHorizontalFlip; test: Resize(256) + CenterCrop(224).
    """
    return resize_crop_transforms(256, 224, MEAN, STD)


def _annotation_dir(root: Path) -> Path:
    nested = root / "annotations"
    return nested if nested.is_dir() else root


def _labelled(keys: list[str], table: dict[str, int], table_file: Path, list_file: Path) -> np.ndarray:
    try:
        return np.array([table[k] for k in keys], dtype=np.int64)
    except KeyError as err:
        raise UserError(f"{list_file} lists {err.args[0]}, which has no label in {table_file}; "
                        f"use the annotation files of one Clothing1M release") from err


def _key_list(path: Path) -> list[str]:
    return read_file(path, SOURCE).split()


def load_clothing1m(root: str | os.PathLike, *, train_transform: Transform = None,
                    test_transform: Transform = None
                    ) -> tuple[ImageFileDataset, ImageFileDataset, ImageFileDataset, int]:
    """Read the Clothing1M noisy training set and the clean validation and test sets.

    Parameters
    ----------
    root : folder holding ``images/`` and the annotation files (in ``root/annotations/`` when that folder exists,
        else in ``root``).
    train_transform, test_transform : callables on RGB PIL images (see :func:`clothing1m_transforms`).

    Returns
    -------
    train : the ``noisy_train_key_list`` images with their noisy labels; ``clean_labels`` is None (the clean labels
        of the noisy training set are unknown).
    val, test : the ``clean_val``/``clean_test`` key lists with clean labels in both label arrays.
    num_classes : 14.
    """
    root = require_dir(Path(root), SOURCE)
    require_dir(root / "images", SOURCE)
    ann = _annotation_dir(root)
    noisy_file, clean_file = ann / "noisy_label_kv.txt", ann / "clean_label_kv.txt"
    noisy_keys, noisy_values = read_pairs(noisy_file, SOURCE)
    clean_keys, clean_values = read_pairs(clean_file, SOURCE)
    for labels, path in ((noisy_values, noisy_file), (clean_values, clean_file)):
        if len(labels) and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
            raise UserError(f"{path} holds labels outside 0..{NUM_CLASSES - 1}; it is not a Clothing1M label file")
    noisy_table = dict(zip(noisy_keys, noisy_values.tolist()))
    clean_table = dict(zip(clean_keys, clean_values.tolist()))
    prefix = str(root) + os.sep

    def dataset(list_name: str, table: dict[str, int], table_file: Path, transform: Transform,
                clean: bool) -> ImageFileDataset:
        list_file = ann / list_name
        keys = _key_list(list_file)
        labels = _labelled(keys, table, table_file, list_file)
        return ImageFileDataset([prefix + k for k in keys], labels, labels if clean else None, transform)

    train = dataset("noisy_train_key_list.txt", noisy_table, noisy_file, train_transform, clean=False)
    val = dataset("clean_val_key_list.txt", clean_table, clean_file, test_transform, clean=True)
    test = dataset("clean_test_key_list.txt", clean_table, clean_file, test_transform, clean=True)
    return train, val, test, NUM_CLASSES
