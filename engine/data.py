"""A run's data: datasets and label tensors, the per-epoch generators, and this process's training batches."""
from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from data_loader import DatasetBundle, build_datasets
from data_loader.tensor_loader import TensorLoader
from fine.distributed import ShardedSampler


@dataclass
class TrainData:
    """The datasets of a run and its training labels as tensors.

    ``noisy`` (N,) long: the labels training sees; ``clean`` (N,) long or None when unknown (real-world noise);
    ``is_clean`` (N,) bool = ``noisy == clean`` or None.
    """

    bundle: DatasetBundle
    noisy: torch.Tensor
    clean: torch.Tensor | None
    is_clean: torch.Tensor | None


def load_data(args: argparse.Namespace) -> TrainData:
    """Build the run's datasets (noise and split seeded by ``--noise_seed``, default ``--seed``)."""
    noise_seed = args.seed if args.noise_seed is None else args.noise_seed
    bundle = build_datasets(args.dataset, args.data_path, noise_kind=args.noise_kind, noise_rate=args.noise_rate,
                            seed=noise_seed, noise_file=args.noise_file, val_size=args.val_size,
                            noise_label=args.noise_label, imagenet_path=args.imagenet_path)
    noisy = torch.as_tensor(bundle.train.noisy_labels, dtype=torch.long)
    known = bundle.train.clean_labels is not None
    clean = torch.as_tensor(bundle.train.clean_labels, dtype=torch.long) if known else None
    return TrainData(bundle, noisy, clean, (noisy == clean) if known else None)


def epoch_generator(seed: int, epoch: int, rank: int = 0) -> torch.Generator:
    """The generator of the epoch's sample order, seeded from (seed, epoch) and the same on every process, so a
    resumed run repeats the order exactly and torchrun processes agree on it.

    Also reseeds torch's global generator, which the dataset transforms draw from when ``num_workers`` is 0,
    differently on each ``rank`` so that the processes draw different augmentations.
    """
    torch.manual_seed(seed * 100_003 + epoch + 7919 * rank)
    return torch.Generator().manual_seed(seed * 100_003 + epoch)


def augment_generator(seed: int, epoch: int, rank: int = 0) -> torch.Generator:
    """The generator of one process's augmentations in an epoch on the device-resident path, from (seed, epoch,
    rank): repeatable on resume, different between processes and independent of the sample-order generator."""
    state = np.random.SeedSequence([seed, epoch, rank, 1]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


class TwoViews(Dataset):
    """Items ``(view1, view2, label, index)``: two independent augmentations of each sample of ``dataset``."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int, int]:
        x1, y, index = self.dataset[i]
        x2, _, _ = self.dataset[i]
        return x1, x2, y, index


class TrainBatches:
    """Re-iterable augmented training batches of this process, from the device-resident images (``resident``, a
    :class:`TensorLoader`) or, when it is None, from a DataLoader over ``dataset``.

    Each pass takes this process's samples, in order, from ``sampler`` (:class:`fine.distributed.ShardedSampler`:
    a fixed order, or a fresh shuffle per pass). Batches are ``(x, y, index)``, or with ``two_views``
    ``(x1, x2, y, index)``: the same samples under two independent augmentations. On the device the augmentations
    are drawn from ``augment``; on the DataLoader path from torch's generators, as the dataset's transform does.
    With ``augment_images`` False the device path serves the un-augmented images (the DataLoader path serves what
    ``dataset``'s transform makes: give it the test transform's view for the same). ``len`` is the number of
    batches of one pass.
    """

    def __init__(self, sampler: ShardedSampler, *, dataset: Dataset, resident: TensorLoader | None, batch_size: int,
                 augment: torch.Generator, two_views: bool = False, num_workers: int = 0,
                 pin_memory: bool = False, augment_images: bool = True) -> None:
        self.sampler, self.dataset, self.resident, self.batch_size = sampler, dataset, resident, batch_size
        self.augment, self.two_views, self.augment_images = augment, two_views, augment_images
        self.loader_kw = dict(num_workers=num_workers, pin_memory=pin_memory)

    def __len__(self) -> int:
        return -(-len(self.sampler) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        if self.resident is None:
            dataset = TwoViews(self.dataset) if self.two_views else self.dataset
            return iter(DataLoader(dataset, batch_size=self.batch_size, sampler=self.sampler, **self.loader_kw))
        return self._device_batches()

    def _device_batches(self) -> Iterator[tuple[torch.Tensor, ...]]:
        order = self.sampler.draw()
        epoch = dict(shuffle=False, augment=self.augment_images, batch_size=self.batch_size)
        if not self.two_views:
            yield from self.resident.epoch(order, generator=self.augment, **epoch)
            return
        g1, g2 = (torch.Generator().manual_seed(int(s)) for s in torch.randint(2**62, (2,), generator=self.augment))
        for (x1, y, index), (x2, _, _) in zip(self.resident.epoch(order, generator=g1, **epoch),
                                              self.resident.epoch(order, generator=g2, **epoch)):
            yield x1, x2, y, index
