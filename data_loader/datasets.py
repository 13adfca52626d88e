"""In-memory datasets with noisy labels, and :func:`build_datasets`, the one entry point every trainer calls."""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from data_loader.cifar import load_cifar
from data_loader.cifar_n import check_human_noise, load_cifar_n_labels
from data_loader.clothing1m import clothing1m_transforms, load_clothing1m
from data_loader.digits import load_digits_split
from data_loader.fashion_mnist import load_fashion_mnist
from data_loader.noise import load_or_make_noisy_labels
from data_loader.transforms import Standardize, get_transforms, user_transforms
from data_loader.user_data import load_user_data
from data_loader.webvision import load_webvision, webvision_transforms
from fine.errors import UserError

DATASETS = ("cifar10", "cifar100", "digits", "fashion_mnist", "clothing1m", "webvision", "folder", "npz")
# Class counts of the fixed datasets; "folder" and "npz" (users' data) take theirs from the data.
NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "digits": 10, "fashion_mnist": 10, "clothing1m": 14, "webvision": 50}
USER_DATASETS = ("folder", "npz")
# Datasets whose training labels are noisy as collected ("real" noise): no clean labels, no synthetic noise.
REAL_DATASETS = ("clothing1m", "webvision")
_SPLIT_STREAM = 1  # the validation split draws from default_rng([seed, 1]), a stream separate from the noise's


class NoisyDataset(Dataset):
    """Samples held in memory with their noisy (and, when known, clean) labels.

    Item ``i`` is ``(transform(images[i]), int(noisy_labels[i]), i)``: the index lets a trainer write per-sample
    results into ``(N, ...)`` arrays whatever the shuffle order.

    Parameters
    ----------
    images : the samples: (N, C, H, W) uint8 images, or a floating-point (N, ...) tensor of any other kind, e.g.
        (N, D) table rows or (N, C, L) signals (:mod:`data_loader.user_data`).
    noisy_labels : (N,) int array, the labels training sees.
    clean_labels : (N,) int array or None when unknown.
    transform : callable mapping one sample (a uint8 (C, H, W) image, or a float row / signal) to a float tensor;
        None returns the stored sample.
    """

    def __init__(self, images: torch.Tensor, noisy_labels: np.ndarray, clean_labels: np.ndarray | None = None,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        image = images.dtype == torch.uint8 and images.ndim == 4
        if not (image or (images.is_floating_point() and images.ndim >= 2)):
            raise ValueError(f"images must be a uint8 (N, C, H, W) tensor or a float (N, ...) tensor of at least two "
                             f"dimensions, got {images.dtype} {tuple(images.shape)}")
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
    ``kind`` is what one sample is: ``"image"`` (C, H, W), ``"table"`` (D,) or ``"signal"`` (C, L); tables and
    signals share one :class:`~data_loader.transforms.Standardize` as train and test transform.
    """

    train: NoisyDataset
    val: NoisyDataset | None
    test: NoisyDataset
    num_classes: int
    train_transform: Callable[[torch.Tensor], torch.Tensor]
    test_transform: Callable[[torch.Tensor], torch.Tensor]
    noise_info: dict
    extra_tests: dict[str, Dataset] = field(default_factory=dict)
    kind: str = "image"

    @property
    def standardization(self) -> dict[str, list[float]] | None:
        """The training-split statistics tables and signals are standardised with (``{"mean": [...], "std":
        [...]}``, per feature or channel, JSON-ready: save it with the run), or None for images."""
        return self.test_transform.to_dict() if isinstance(self.test_transform, Standardize) else None


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


def _user_noisy_labels(dataset: str, data_path: str | os.PathLike, given: np.ndarray, clean: np.ndarray | None, *,
                       noise_kind: str, noise_rate: float, seed: int, num_classes: int, images: np.ndarray,
                       noise_file: str | os.PathLike | None) -> tuple[np.ndarray, dict]:
    """Noisy labels of a user's data set: its own (``noise_kind`` none, no ``noise_file``) or made from its clean
    labels like any other dataset's, saved under the data folder (the .npz file's folder)."""
    path = Path(data_path)
    if noise_kind == "none" and noise_file is None:
        info = {"kind": "none", "rate": None, "seed": seed, "label_file": None, "reused": True,
                "noise_rate": None if clean is None else float((given != clean).mean())}
        return given, info
    if clean is None:
        extra = "noisy_labels.npy beside train/" if dataset == "folder" else "a y_train_clean array"
        raise UserError(f"{path} has only noisy labels, so --noise_kind {noise_kind} / --noise_file cannot be applied "
                        f"to clean ones; use --noise_kind none, or add {extra} to make the folder labels clean")
    root, name = (path, dataset) if dataset == "folder" else (path.parent, f"npz-{path.stem}")
    return load_or_make_noisy_labels(clean, dataset=name, kind=noise_kind, rate=noise_rate, seed=seed,
                                     num_classes=num_classes, root=root,
                                     inputs=images if noise_kind == "instance" else None, noise_file=noise_file)


def _real_world(dataset: str, data_path: str | os.PathLike, noise_kind: str, noise_file: str | os.PathLike | None,
                imagenet_path: str | os.PathLike | None) -> DatasetBundle:
    """Clothing1M or mini-WebVision with their own noisy training labels (no clean ones exist)."""
    if noise_kind != "real" or noise_file is not None:
        raise UserError(f"{dataset} comes with real label noise; pass --noise_kind real (no synthetic noise and no "
                        f"--noise_file)")
    if dataset == "clothing1m":
        train_transform, test_transform = clothing1m_transforms()
        train, val, test, num_classes = load_clothing1m(data_path, train_transform=train_transform,
                                                        test_transform=test_transform)
        extra = {}
    else:
        train_transform, test_transform = webvision_transforms()
        train, test, imagenet, num_classes = load_webvision(data_path, imagenet_path, train_transform=train_transform,
                                                            test_transform=test_transform)
        val, extra = None, ({"imagenet": imagenet} if imagenet is not None else {})
    info = {"dataset": dataset, "kind": "real", "rate": None, "seed": None, "label_file": None, "reused": True,
            "noise_rate": None, "noise_rate_full": None, "clean_labels": "unavailable", "num_train": len(train),
            "num_val": 0 if val is None else len(val)}
    return DatasetBundle(train=train, val=val, test=test, num_classes=num_classes, train_transform=train_transform,
                         test_transform=test_transform, noise_info=info, extra_tests=extra)


def build_datasets(dataset: str, data_path: str | os.PathLike, *, noise_kind: str, noise_rate: float, seed: int,
                   noise_file: str | os.PathLike | None = None, val_size: int | None = 0,
                   noise_label: str | None = None, imagenet_path: str | os.PathLike | None = None) -> DatasetBundle:
    """Load ``dataset``, corrupt its training labels, and split off a validation set.

    The noisy labels are made (or read back) for the full standard training set, saved under
    ``<data_path>/noisy_labels/``, or in the user cache when the data folder cannot be written (see
    :func:`data_loader.noise.load_or_make_noisy_labels`), so every method sees the same labels for the same seed.
    With ``val_size > 0`` a class-balanced (by clean label) seeded split moves ``val_size`` training samples, noisy
    labels included, to the validation set (FINE's sample-selection protocol, 45k/5k on CIFAR); ``val_size == 0`` (or
    None) trains on everything (DivideMix). Train and validation are re-indexed from 0; validation and test use the
    test transform.

    ``noise_kind="human"`` reads the CIFAR-N label set ``noise_label`` (:mod:`data_loader.cifar_n`) instead of making
    labels; the clean labels stay the CIFAR ones. ``"folder"`` and ``"npz"`` read a user's data
    (:mod:`data_loader.user_data`): the class count comes from the data, the transforms normalise with the training
    images' statistics, ``noise_kind="none"`` keeps the data's own (noisy) labels, and synthetic noise needs the clean
    labels; with unknown clean labels, ``clean_labels`` and the noise rates are None and the split balances the noisy
    labels. A .npz may hold a table or signals instead of images (``kind``): these are standardised with the mean and
    std of the final training split (after the validation split is taken out), for train, validation and test alike,
    and are not augmented; ``bundle.standardization`` holds the statistics.

    Parameters
    ----------
    dataset : one of ``DATASETS``.
    data_path : folder with the data files and the ``noisy_labels/`` folder (``npz``: the .npz file;
        ``fashion_mnist``: the four idx files, directly or in ``FashionMNIST/raw/``, see
        :mod:`data_loader.fashion_mnist`; ``digits``: only the ``noisy_labels/`` folder).
    noise_kind, noise_rate, seed, noise_file : see :func:`data_loader.noise.make_noisy_labels`; ``seed`` also seeds the
        validation split.
    val_size : number of validation samples, a multiple of the class count.
    noise_label : CIFAR-N label set, with ``noise_kind="human"`` only.
    imagenet_path : ILSVRC12 folder for WebVision's second test set (``extra_tests["imagenet"]``); optional.

    ``clothing1m`` and ``webvision`` (``noise_kind="real"``) keep their own noisy labels, have no clean training
    labels (``clean_labels`` None) and use their published splits (Clothing1M's clean validation set; ``val_size``
    is ignored).

    Returns
    -------
    DatasetBundle
        ``noise_info`` holds ``dataset``, ``kind``, ``rate``, ``seed``, ``label_file``, ``reused``, ``noise_rate``
        (realised on the final train set), ``noise_rate_full`` (on the full training set), ``num_train``, ``num_val``;
        human noise adds ``label``.
    """
    if dataset not in DATASETS:
        raise UserError(f"unknown dataset {dataset!r}; use one of {', '.join(DATASETS)}")
    if dataset in REAL_DATASETS:
        return _real_world(dataset, data_path, noise_kind, noise_file, imagenet_path)
    if noise_kind == "real":
        raise UserError(f"--noise_kind real is for {' and '.join(REAL_DATASETS)}; {dataset} takes synthetic noise "
                        f"(sym, asym, ...)")
    check_human_noise(dataset, noise_kind, noise_label)
    if noise_kind == "human" and noise_file is not None:
        raise UserError("--noise_file and --noise_kind human both give the noisy labels; pass only one")
    if dataset in USER_DATASETS:
        user = load_user_data(dataset, data_path)
        num_classes, clean_train, kind = user.num_classes, user.train_clean, user.kind
        train_images, test_images, test_labels = user.train_inputs, user.test_inputs, user.test_labels
        if kind == "image":
            train_transform, test_transform = user_transforms(torch.from_numpy(train_images))
        noisy, info = _user_noisy_labels(dataset, data_path, user.train_labels, clean_train, noise_kind=noise_kind,
                                         noise_rate=noise_rate, seed=seed, num_classes=num_classes,
                                         images=train_images, noise_file=noise_file)
    else:
        num_classes, kind = NUM_CLASSES[dataset], "image"
        if dataset == "digits":
            data = load_digits_split()
        elif dataset == "fashion_mnist":
            data = load_fashion_mnist(data_path)
        else:
            data = load_cifar(dataset, data_path)
        clean_train, train_images = data.train_labels, data.train_images
        test_images, test_labels = data.test_images, data.test_labels
        train_transform, test_transform = get_transforms(dataset)
        if noise_kind == "human":
            noisy, info = load_cifar_n_labels(dataset, data_path, noise_label, clean_train)
        else:
            noisy, info = load_or_make_noisy_labels(
                clean_train, dataset=dataset, kind=noise_kind, rate=noise_rate, seed=seed, num_classes=num_classes,
                root=data_path, inputs=train_images if noise_kind == "instance" else None, noise_file=noise_file)
    train, val = NoisyDataset(torch.from_numpy(train_images), noisy, clean_train), None
    if val_size:
        balance = clean_train if clean_train is not None else noisy
        train_idx, val_idx = balanced_split(balance, val_size, num_classes, seed)
        train, val = train.subset(train_idx), train.subset(val_idx)
    if kind != "image":
        train_transform = test_transform = Standardize.fit(train.images)
    train, val = train.view(train_transform), None if val is None else val.view(test_transform)
    test = NoisyDataset(torch.from_numpy(test_images), test_labels, test_labels, test_transform)
    rate = None if train.clean_labels is None else float((train.noisy_labels != train.clean_labels).mean())
    noise_info = {"dataset": dataset, **info, "noise_rate": rate, "noise_rate_full": info["noise_rate"],
                  "num_train": len(train), "num_val": 0 if val is None else len(val)}
    return DatasetBundle(train=train, val=val, test=test, num_classes=num_classes, train_transform=train_transform,
                         test_transform=test_transform, noise_info=noise_info, kind=kind)
