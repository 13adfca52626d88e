"""Train and test transforms: torchvision.transforms.v2 on uint8 (C, H, W) images (no PIL round trip), and
:class:`Standardize` for float table rows and signals (no augmentation)."""
from __future__ import annotations

from typing import Callable

import torch
from torchvision.transforms import v2

from fine.errors import UserError

# Per-channel mean and std of the training images scaled to [0, 1]. Digits: computed once on the fixed 1,437-image
# training split of data_loader/digits.py; Fashion-MNIST: on its 60,000 training images (tests/test_datasets.py and
# tests/test_fashion_mnist.py check them).
NORMALIZATION = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "cifar100": ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)),
    "digits": ((0.3056,), (0.3760,)),
    "fashion_mnist": ((0.2860,), (0.3530,)),
}
# Random-crop size and zero padding of the training augmentation, and whether it flips horizontally. Digits are not
# mirror-symmetric, so they do not flip. Fashion-MNIST does: a mirrored garment, bag or shoe is still one of its class
# (no class is told apart by its orientation); its items are scaled to touch the 28x28 frame, so the shifts stay
# within 2 pixels.
AUGMENTATION = {"cifar10": (32, 4, True), "cifar100": (32, 4, True), "digits": (8, 1, False),
                "fashion_mnist": (28, 2, True)}


Transform = Callable[[torch.Tensor], torch.Tensor]


def get_transforms(dataset: str) -> tuple[Transform, Transform]:
    """``(train_transform, test_transform)`` for ``dataset``, each mapping uint8 (C, H, W) to normalised float32.

    Train: RandomCrop(size, padding) [+ RandomHorizontalFlip] + ToDtype(float32, scale) + Normalize; test: ToDtype +
    Normalize.
    """
    if dataset not in NORMALIZATION:
        raise UserError(f"no transforms for dataset {dataset!r}; use one of {', '.join(NORMALIZATION)}")
    return image_transforms(NORMALIZATION[dataset], AUGMENTATION[dataset])


def image_transforms(normalization: tuple[tuple[float, ...], tuple[float, ...]],
                     augmentation: tuple[int | tuple[int, int], int, bool]) -> tuple[Transform, Transform]:
    """``(train_transform, test_transform)`` from explicit ``(mean, std)`` and ``(size, padding, flip)`` settings."""
    mean, std = normalization
    size, padding, flip = augmentation
    to_float = [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
    augment = [v2.RandomCrop(size, padding=padding)] + ([v2.RandomHorizontalFlip()] if flip else [])
    return v2.Compose(augment + to_float), v2.Compose(to_float)


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 (N, C, H, W) images scaled to [0, 1] (a std of 0 is returned as 1)."""
    n, c = images.shape[:2]
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    for start in range(0, n, 4096):  # chunks bound the float copy
        block = images[start:start + 4096].to(torch.float64).div_(255).transpose(0, 1).reshape(c, -1)
        total += block.sum(1)
        total_sq += block.square().sum(1)
    count = max(n * images.shape[2] * images.shape[3], 1)
    mean = total / count
    std = (total_sq / count - mean.square()).clamp_min(0).sqrt()
    std = torch.where(std > 0, std, 1.0)
    return tuple(mean.tolist()), tuple(std.tolist())


def user_transforms(images: torch.Tensor) -> tuple[Transform, Transform]:
    """Transforms for a user's (N, C, H, W) uint8 images: RandomCrop((H, W), padding=min(H, W) // 8) + flip for
    training, both normalised with the per-channel statistics of ``images``."""
    height, width = images.shape[-2:]
    return image_transforms(channel_stats(images), ((height, width), max(min(height, width) // 8, 1), True))


class Standardize:
    """``(x - mean) / std`` of one float sample: per feature of a table row (D,), per channel of a signal (C, L).

    A plain object (two tensors, no closures) so it can be inspected, pickled into DataLoader workers and saved with
    :meth:`to_dict`. Build it from the training split with :meth:`fit`; the test split then gets the same statistics.

    Parameters
    ----------
    mean, std : float32 tensors, (D,) for tables or (C, 1) for signals (they broadcast over a sample).
    """

    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.mean = mean
        self.std = std

    @classmethod
    def fit(cls, x: torch.Tensor, chunk: int = 4096) -> Standardize:
        """Statistics of the training inputs ``x``, (N, D) rows or (N, C, L) signals: the mean and the population
        standard deviation (ddof 0) over every axis but axis 1, accumulated in float64 over ``chunk`` samples at a
        time. A feature or channel constant over ``x`` gets std 1, so it maps to exactly 0."""
        axes = (0, *range(2, x.ndim))
        count = x.numel() // x.shape[1]
        blocks = [x[start:start + chunk] for start in range(0, len(x), chunk)]
        mean = sum(block.double().sum(axes) for block in blocks) / count  # (D,) or (C,)
        shape = (-1,) + (1,) * (x.ndim - 2)  # broadcasts over the trailing axes of a block and a sample
        var = sum((block.double() - mean.view(shape)).square().sum(axes) for block in blocks) / count
        low = torch.stack([block.amin(axes) for block in blocks]).amin(0).double()
        high = torch.stack([block.amax(axes) for block in blocks]).amax(0).double()
        constant = low == high
        mean = torch.where(constant, low, mean)
        std = torch.where(constant, 1.0, var.sqrt())
        return cls(mean.float().view(shape), std.float().view(shape))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """A sample (D,) or (C, L) -> standardised float32 of the same shape."""
        return (x.float() - self.mean) / self.std

    def to_dict(self) -> dict[str, list[float]]:
        """``{"mean": [...], "std": [...]}``, one value per feature (tables) or channel (signals), JSON-ready."""
        return {"mean": self.mean.flatten().tolist(), "std": self.std.flatten().tolist()}

    def __repr__(self) -> str:
        return f"Standardize(mean={self.mean.flatten()}, std={self.std.flatten()})"


def resize_crop_transforms(resize: int, crop: int, mean: tuple[float, ...],
                           std: tuple[float, ...]) -> tuple[v2.Compose, v2.Compose]:
    """``(train, test)`` transforms of the file-backed datasets, from an RGB PIL image to a normalised float32
    (3, crop, crop) tensor. Train: Resize(resize) + RandomCrop(crop) + RandomHorizontalFlip; test: Resize(resize) +
    CenterCrop(crop)."""
    to_float = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
    train = v2.Compose([v2.Resize(resize), v2.RandomCrop(crop), v2.RandomHorizontalFlip(), *to_float])
    test = v2.Compose([v2.Resize(resize), v2.CenterCrop(crop), *to_float])
    return train, test
