"""A data loader that keeps a whole data set on the training device and augments whole batches there.

The uint8 images and noisy labels of a :class:`~data_loader.datasets.NoisyDataset` are copied to ``device`` once;
each epoch then costs one small host-to-device copy (the permutation and the crop offsets / flip flags of every
sample), and each batch is one gather + one fused normalisation, with no worker processes and no per-sample Python.
The augmentation has the distribution of the dataset's torchvision train transform (RandomCrop(size, padding) with
zero padding, RandomHorizontalFlip(0.5)); the random draws come from a CPU generator, so a seed gives the same batches
on any device. ``augment=False`` reproduces the test transform bit for bit.

    loader = TensorLoader(bundle.train, "cifar10", batch_size=128, device=device)
    for x, y, index in loader.epoch(selected, shuffle=True, augment=True, generator=g):
        ...  # x (B, C, H, W) float32 normalised, y (B,) long, index (B,) long, all on device
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from data_loader.datasets import NoisyDataset
from data_loader.transforms import AUGMENTATION, NORMALIZATION
from fine.errors import UserError

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class TensorLoader:
    """The images of ``dataset`` resident on ``device``, served as augmented, normalised batches.

    Parameters
    ----------
    dataset : NoisyDataset whose ``images`` (N, C, H, W) uint8 and ``noisy_labels`` (N,) are copied to ``device``
        once; its ``transform`` is ignored. Tables and signals (float samples) are refused: they need no
        augmentation, and the DataLoader path serves them.
    name : dataset name keying ``NORMALIZATION`` and ``AUGMENTATION`` in :mod:`data_loader.transforms`.
    batch_size : samples per batch; the last batch of an epoch is partial unless ``drop_last``.
    device : where the images live and the batches are produced.
    channels_last : yield batches in ``torch.channels_last`` memory format.
    drop_last : drop an epoch's last partial batch.

    Attributes
    ----------
    images : (N, C, H, W) uint8 tensor on ``device``.
    labels : (N,) int64 tensor on ``device``, the noisy labels at construction; assign a new (N,) tensor to train
        on corrected labels.
    """

    def __init__(self, dataset: NoisyDataset, name: str, *, batch_size: int, device: torch.device | str,
                 channels_last: bool = False, drop_last: bool = False) -> None:
        if dataset.images.dtype != torch.uint8 or dataset.images.ndim != 4:
            raise UserError(f"--data_on_gpu on serves uint8 (N, C, H, W) images only, but {name!r} holds "
                            f"{dataset.images.dtype} samples of shape {tuple(dataset.images.shape[1:])} (a table or "
                            f"signals); use --data_on_gpu off")
        if name not in NORMALIZATION:
            raise UserError(f"no augmentation settings for dataset {name!r}; use one of {', '.join(NORMALIZATION)}")
        if batch_size < 1:
            raise UserError(f"--batch_size must be at least 1, got {batch_size}")
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.channels_last = channels_last
        self.drop_last = drop_last
        self.images = dataset.images.to(self.device)
        self.labels = torch.as_tensor(dataset.noisy_labels, dtype=torch.int64).to(self.device)
        mean, std = NORMALIZATION[name]
        channels = self.images.shape[1]
        if len(mean) != channels:
            raise UserError(f"dataset {name!r} normalises {len(mean)} channels but the images have {channels}; "
                            f"pass the name of the data set these images come from")
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self.size, self.padding, self.flip = AUGMENTATION[name]
        height, width = self.images.shape[2:]
        if height + 2 * self.padding < self.size or width + 2 * self.padding < self.size:
            raise UserError(f"crop size {self.size} exceeds the padded {height}x{width} images of {name!r}; "
                            f"check that the images belong to that data set")
        self._arange = torch.arange(self.size, device=self.device)

    def __len__(self) -> int:
        """Number of samples N held."""
        return len(self.labels)

    def num_batches(self, n: int, batch_size: int | None = None) -> int:
        """Batches in an epoch over ``n`` samples (of ``batch_size``, default the loader's)."""
        size = batch_size or self.batch_size
        return n // size if self.drop_last else -(-n // size)

    def epoch(self, indices: torch.Tensor | np.ndarray | None = None, *, shuffle: bool, augment: bool,
              generator: torch.Generator | None = None, batch_size: int | None = None) -> Iterator[Batch]:
        """One pass over ``indices`` (all samples if None) in batches of ``batch_size`` (default the loader's).

        Parameters
        ----------
        indices : (n,) int sample indices, or an (N,) bool mask; any device, or a numpy array.
        shuffle : visit the samples in a random order (else in the order given).
        augment : random crop (offsets uniform in [0, H + 2 * padding - size]) with zero padding, then a
            horizontal flip with probability 0.5 where the dataset flips; else the plain test transform.
        generator : CPU generator for the order and the augmentation; None uses torch's global CPU generator.
        batch_size : samples per batch of this pass (default: the loader's ``batch_size``).

        Yields
        ------
        x : (B, C, size, size) float32 normalised images on ``device`` (size = H, W without augmentation)
        y : (B,) int64 noisy labels
        index : (B,) int64 sample indices
        """
        order = self._indices(indices)
        n = len(order)
        if shuffle:
            order = order[torch.randperm(n, generator=generator).to(self.device)]
        if augment:
            params = self.draw_augmentation(n, generator).to(self.device)
        size = batch_size or self.batch_size
        for start in range(0, self.num_batches(n, size) * size, size):
            index = order[start:start + size]
            images = self.images[index]
            if augment:
                images = self.crop_flip(images, params[start:start + size])
            yield self.normalize(images), self.labels[index], index

    def draw_augmentation(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(n, 3) int64 CPU tensor of (top, left, flip) per sample, drawn like torchvision's RandomCrop and flip."""
        height, width = self.images.shape[2:]
        top = torch.randint(0, height + 2 * self.padding - self.size + 1, (n,), generator=generator)
        left = torch.randint(0, width + 2 * self.padding - self.size + 1, (n,), generator=generator)
        flip = torch.rand(n, generator=generator) < 0.5
        if not self.flip:
            flip.zero_()
        return torch.stack([top, left, flip.long()], dim=1)

    def crop_flip(self, images: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """Zero-pad, crop and optionally flip a batch in one gather.

        Parameters
        ----------
        images : (B, C, H, W) uint8
        params : (B, 3) int64 (top, left, flip) in padded coordinates, on the images' device

        Returns
        -------
        (B, C, size, size) uint8: ``hflip(crop(pad(image), top, left))`` when flip is 1, else the crop.
        """
        p = self.padding
        padded = F.pad(images, (p, p, p, p)) if p else images
        top, left, flip = params.unbind(1)
        rows = top[:, None] + self._arange  # (B, size)
        cols = left[:, None] + torch.where(flip[:, None].bool(), self.size - 1 - self._arange, self._arange)
        batch = torch.arange(len(images), device=images.device)[:, None, None, None]
        channel = torch.arange(images.shape[1], device=images.device)[None, :, None, None]
        return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, C, H, W) -> float32 ``(x / 255 - mean) / std``, op for op as torchvision's ToDtype + Normalize."""
        x = images.to(torch.float32)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x.mul_(1.0 / 255).sub_(self.mean).div_(self.std)

    def _indices(self, indices: torch.Tensor | np.ndarray | None) -> torch.Tensor:
        """Validated (n,) int64 indices on ``device``."""
        n = len(self.labels)
        if indices is None:
            return torch.arange(n, device=self.device)
        indices = torch.as_tensor(indices, device=self.device)
        if indices.dtype == torch.bool:
            if indices.shape != (n,):
                raise ValueError(f"a boolean mask must have shape ({n},), got {tuple(indices.shape)}")
            return indices.nonzero().squeeze(1)
        if indices.ndim != 1 or indices.is_floating_point():
            raise ValueError(f"indices must be a 1-D integer tensor, got {indices.dtype} {tuple(indices.shape)}")
        if len(indices) and (int(indices.min()) < 0 or int(indices.max()) >= n):
            raise ValueError(f"indices must lie in [0, {n}), got [{int(indices.min())}, {int(indices.max())}]")
        return indices.long()
