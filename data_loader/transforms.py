"""Train and test transforms on uint8 (C, H, W) tensors with torchvision.transforms.v2 (no PIL round trip)."""
from __future__ import annotations

from typing import Callable

import torch
from torchvision.transforms import v2

from fine.errors import UserError

# Per-channel mean and std of the training images scaled to [0, 1]. Digits: computed once on the fixed 1,437-image
# training split of data_loader/digits.py (tests/test_datasets.py checks them).
NORMALIZATION = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "cifar100": ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)),
    "digits": ((0.3056,), (0.3760,)),
}
# Random-crop size and zero padding of the training augmentation, and whether it flips horizontally (digits are not
# mirror-symmetric, so they do not).
AUGMENTATION = {"cifar10": (32, 4, True), "cifar100": (32, 4, True), "digits": (8, 1, False)}


Transform = Callable[[torch.Tensor], torch.Tensor]


def get_transforms(dataset: str) -> tuple[Transform, Transform]:
    """``(train_transform, test_transform)`` for ``dataset``, each mapping uint8 (C, H, W) to normalised float32.

    Train: RandomCrop(size, padding) [+ RandomHorizontalFlip] + ToDtype(float32, scale) + Normalize; test: ToDtype +
    Normalize.
    """
    if dataset not in NORMALIZATION:
        raise UserError(f"no transforms for dataset {dataset!r}; use one of {', '.join(NORMALIZATION)}")
    mean, std = NORMALIZATION[dataset]
    size, padding, flip = AUGMENTATION[dataset]
    to_float = [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
    augment = [v2.RandomCrop(size, padding=padding)] + ([v2.RandomHorizontalFlip()] if flip else [])
    return v2.Compose(augment + to_float), v2.Compose(to_float)
