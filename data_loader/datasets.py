"""In-memory datasets with noisy labels, and :func:`build_datasets`, the one entry point every trainer calls."""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from data_loader.cifar import load_cifar
from data_loader.digits import load_digits_split
from data_loader.noise import load_or_make_noisy_labels
from data_loader.transforms import get_transforms
from fine.errors import UserError

DATASETS = ("cifar10", "cifar100", "digits")
NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "digits": 10}
_SPLIT_STREAM = 1  # the validation split draws from default_rng([seed, 1]), a stream separate from the noise's


class NoisyDataset(Dataset):
    """Images held in memory with their noisy (and, when known, clean) labels.

    Item ``i`` is ``(transform(images[i]), int(noisy_labels[i]), i)``: the index lets a trainer write per-sample
    results into ``(N, ...)`` arrays whatever the shuffle order.

    Parameters
    ----------
    images : (N, C, H, W) uint8 tensor.
    noisy_labels : (N,) int array, the labels training sees.
    clean_labels : (N,) int array or None when unknown.
    transform : callable mapping a uint8 (C, H, W) tensor to a float tensor; None returns the uint8 tensor.
    """

    def __init__(self, images: torch.Tensor, noisy_labels: np.ndarray, clean_labels: np.ndarray | None = None,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"images must be a uint8 (N, C, H, W) tensor, got {images.dtype} {tuple(images.shape)}")
        self.images = images
        self.noisy_labels = np.asarray(noisy_labels, dtype=np.int64)
        self.clean_labels = None if clean_labels is None else np.asarray(clean_labels, dtype=np.int64)
        for labels in (self.noisy_labels, self.clean_labels):
            if labels is not None and labels.shape != (len(images),):
                raise ValueError(f"labels of shape {labels.shape} do not match {len(images)} images")
        self.transform = transform

    def __len__(self) -> int:
        return len(self.noisy_labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        image = self.images[i]
        return (self.transform(image) if self.transform is not None else image), int(self.noisy_labels[i]), i

    @property
    def targets(self) -> np.ndarray:
        """The noisy labels (N,), under the name torchvision datasets use."""
        return self.noisy_labels

    def view(self, transform: Callable[[torch.Tensor], torch.Tensor] | None) -> NoisyDataset:
        """The same samples and label arrays (shared, not copied) seen through another ``transform``."""
        other = copy.copy(self)
        other.transform = transform
        return other

    def subset(self, indices: np.ndarray) -> NoisyDataset:
        """A new dataset of the samples at ``indices`` (in that order), re-indexed 0..len(indices)-1."""
        indices = np.asarray(indices, dtype=np.int64)
        clean = None if self.clean_labels is None else self.clean_labels[indices]
        return NoisyDataset(self.images[torch.from_numpy(indices)], self.noisy_labels[indices], clean, self.transform)


@dataclass
class DatasetBundle:
    """What a trainer needs: the splits, the class count, both transforms and a description of the label noise.

    ``test`` holds clean labels in both ``noisy_labels`` and ``clean_labels``; ``val`` is None in full-train mode.
    """

    train: NoisyDataset
    val: NoisyDataset | None
    test: NoisyDataset
    num_classes: int
    train_transform: Callable[[torch.Tensor], torch.Tensor]
    test_transform: Callable[[torch.Tensor], torch.Tensor]
    noise_info: dict


def balanced_split(labels: np.ndarray, val_size: int, num_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded class-balanced split into train and validation indices.

    Parameters
    ----------
    labels : (N,) int array the balance is over (clean labels where known).
    val_size : validation size; a multiple of ``num_classes``, each class giving ``val_size // num_classes`` samples
        and keeping at least one for training.
    num_classes : K.
    seed : the split draws from ``np.random.default_rng([seed, 1])``.

    Returns
    -------
    train_idx, val_idx : sorted int64 arrays, disjoint, covering 0..N-1.
    """
    n = len(labels)
    if not 0 <= val_size < n:
        raise UserError(f"--val_size {val_size} must be in [0, {n}) for a training set of {n} samples")
    if val_size % num_classes:
        lower = val_size // num_classes * num_classes
        raise UserError(f"--val_size {val_size} is not a multiple of the {num_classes} classes, which a "
                        f"class-balanced split needs; use e.g. {lower or num_classes} or {lower + num_classes}")
    per_class = val_size // num_classes
    counts = np.bincount(labels, minlength=num_classes)
    if per_class and counts.min() <= per_class:
        c = int(counts.argmin())
        raise UserError(f"--val_size {val_size} takes {per_class} samples per class but class {c} has only "
                        f"{counts[c]} training samples; pass a smaller --val_size")
    rng = np.random.default_rng([seed, _SPLIT_STREAM])
    val_idx = np.sort(np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:per_class]
                                      for c in range(num_classes)])).astype(np.int64)
    train_idx = np.setdiff1d(np.arange(n), val_idx)
    return train_idx, val_idx


def build_datasets(dataset: str, data_path: str | os.PathLike, *, noise_kind: str, noise_rate: float, seed: int,
                   noise_file: str | os.PathLike | None = None, val_size: int | None = 0) -> DatasetBundle:
    """Load ``dataset``, corrupt its training labels, and split off a validation set.

    The noisy labels are made (or read back) for the full standard training set, saved under
    ``<data_path>/noisy_labels/`` (see :func:`data_loader.noise.load_or_make_noisy_labels`), so every method sees the
    same labels for the same seed. With ``val_size > 0`` a class-balanced (by clean label) seeded split moves
    ``val_size`` training samples, noisy labels included, to the validation set (FINE's sample-selection protocol,
    45k/5k on CIFAR); ``val_size == 0`` (or None) trains on everything (DivideMix). Train and validation are
    re-indexed from 0; validation and test use the test transform.

    Parameters
    ----------
    dataset : one of ``DATASETS``.
    data_path : folder with the data files and the ``noisy_labels/`` folder.
    noise_kind, noise_rate, seed, noise_file : see :func:`data_loader.noise.make_noisy_labels`; ``seed`` also seeds the
        validation split.
    val_size : number of validation samples, a multiple of the class count.

    Returns
    -------
    DatasetBundle
        ``noise_info`` holds ``dataset``, ``kind``, ``rate``, ``seed``, ``label_file``, ``reused``, ``noise_rate``
        (realised on the final train set), ``noise_rate_full`` (on the full training set), ``num_train``, ``num_val``.
    """
    if dataset not in DATASETS:
        raise UserError(f"unknown dataset {dataset!r}; use one of {', '.join(DATASETS)}")
    num_classes = NUM_CLASSES[dataset]
    data = load_cifar(dataset, data_path) if dataset.startswith("cifar") else load_digits_split()
    train_transform, test_transform = get_transforms(dataset)
    noisy, info = load_or_make_noisy_labels(
        data.train_labels, dataset=dataset, kind=noise_kind, rate=noise_rate, seed=seed, num_classes=num_classes,
        root=data_path, inputs=data.train_images if noise_kind == "instance" else None, noise_file=noise_file)
    full = NoisyDataset(torch.from_numpy(data.train_images), noisy, data.train_labels, train_transform)
    train, val = full, None
    if val_size:
        train_idx, val_idx = balanced_split(data.train_labels, val_size, num_classes, seed)
        train, val = full.subset(train_idx), full.subset(val_idx).view(test_transform)
    test = NoisyDataset(torch.from_numpy(data.test_images), data.test_labels, data.test_labels, test_transform)
    noise_info = {"dataset": dataset, **info, "noise_rate": float((train.noisy_labels != train.clean_labels).mean()),
                  "noise_rate_full": info["noise_rate"], "num_train": len(train),
                  "num_val": 0 if val is None else len(val)}
    return DatasetBundle(train=train, val=val, test=test, num_classes=num_classes, train_transform=train_transform,
                         test_transform=test_transform, noise_info=noise_info)
