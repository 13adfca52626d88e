"""Mini-WebVision: the Google half of WebVision 1.0 (Li et al. 2017) restricted to its first 50 classes, the
DivideMix/FINE benchmark, tested on the WebVision validation images and the ILSVRC12 validation images of those classes.

Layout (WebVision 1.0 "resized" release)::

    root/info/train_filelist_google.txt   google/q0001/xxx.jpg 0
    root/info/val_filelist.txt            xxx.jpg 0              (images in root/val_images_256/)
    root/info/synsets.txt                 n01440764 tench, ...   (WebVision class wnids, class order)
    root/google/q0001/xxx.jpg ...
    imagenet_root/val/<wnid>/*.JPEG       (ILSVRC12 validation images sorted into class folders)
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

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
WEBVISION_CLASSES = 1000
SOURCE = "download WebVision 1.0 (resized images and info files) from https://data.vision.ee.ethz.ch/cvl/webvision/"
IMAGENET_SOURCE = ("download the ILSVRC2012 validation images from https://image-net.org and sort them into "
                   "val/<wnid>/ class folders")
Transform = Callable[[Image.Image], torch.Tensor] | None


def webvision_transforms() -> tuple[v2.Compose, v2.Compose]:
    """``(train, test)`` transforms from an RGB PIL image to an ImageNet-normalised float32 (3, 299, 299) tensor.

    Train: Resize(320) + RandomCrop(299) + RandomHorizontalFlip; test: Resize(320) + CenterCrop(299).
    """
    return resize_crop_transforms(320, 299, IMAGENET_MEAN, IMAGENET_STD)


def _file_list(list_file: Path, image_dir: Path, num_classes: int) -> tuple[list[str], np.ndarray]:
    keys, labels = read_pairs(list_file, SOURCE)
    keep = np.flatnonzero((labels >= 0) & (labels < num_classes))
    prefix = str(image_dir) + os.sep
    return [prefix + keys[i] for i in keep], labels[keep]


def _imagenet_val(root: Path, imagenet_root: Path, num_classes: int) -> tuple[list[str], np.ndarray]:
    synsets_file = root / "info" / "synsets.txt"
    wnids = [line.split()[0] for line in read_file(synsets_file, SOURCE).splitlines() if line.strip()]
    if len(wnids) < num_classes:
        raise UserError(f"{synsets_file} lists {len(wnids)} classes, fewer than the {num_classes} requested")
    imagenet_root = require_dir(imagenet_root, IMAGENET_SOURCE)
    base = imagenet_root / "val" if (imagenet_root / "val").is_dir() else imagenet_root
    paths, labels = [], []
    for c, wnid in enumerate(wnids[:num_classes]):
        names = sorted(os.listdir(require_dir(base / wnid, IMAGENET_SOURCE)))
        paths += [str(base / wnid / name) for name in names]
        labels.append(np.full(len(names), c, dtype=np.int64))
    return paths, np.concatenate(labels)


def load_webvision(root: str | os.PathLike, imagenet_root: str | os.PathLike | None = None, *, num_classes: int = 50,
                   train_transform: Transform = None, test_transform: Transform = None
                   ) -> tuple[ImageFileDataset, ImageFileDataset, ImageFileDataset | None, int]:
    """Read the mini-WebVision training set and its two test sets.

    Parameters
    ----------
    root : WebVision 1.0 folder holding ``info/``, ``google/`` and ``val_images_256/``.
    imagenet_root : folder holding ``val/<wnid>/`` (or ``<wnid>/`` directly) ILSVRC12 validation images; None skips
        the ImageNet test set.
    num_classes : keep the samples of classes ``0..num_classes-1`` (50 for mini-WebVision).
    train_transform, test_transform : callables on RGB PIL images (see :func:`webvision_transforms`).

    Returns
    -------
    train : Google training images with their (noisy) web labels; ``clean_labels`` is None.
    test_webvision : WebVision validation images with clean labels in both label arrays.
    test_imagenet : ILSVRC12 validation images of the same classes (class c = ``synsets.txt`` line c), or None.
    num_classes : as given.
    """
    if not 1 <= num_classes <= WEBVISION_CLASSES:
        raise UserError(f"WebVision has {WEBVISION_CLASSES} classes; num_classes {num_classes} must be in 1..1000")
    root = require_dir(Path(root), SOURCE)
    info = root / "info"
    train_paths, train_labels = _file_list(info / "train_filelist_google.txt", root, num_classes)
    val_paths, val_labels = _file_list(info / "val_filelist.txt", require_dir(root / "val_images_256", SOURCE),
                                       num_classes)
    train = ImageFileDataset(train_paths, train_labels, None, train_transform)
    test_webvision = ImageFileDataset(val_paths, val_labels, val_labels, test_transform)
    test_imagenet = None
    if imagenet_root is not None:
        paths, labels = _imagenet_val(root, Path(imagenet_root), num_classes)
        test_imagenet = ImageFileDataset(paths, labels, labels, test_transform)
    return train, test_webvision, test_imagenet, num_classes
