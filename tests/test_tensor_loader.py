"""TensorLoader: exact agreement with the torchvision transforms, epoch coverage, seeding, and a training run that
matches the DataLoader path."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from data_loader import get_transforms
from data_loader.datasets import NoisyDataset
from data_loader.tensor_loader import TensorLoader
from fine.errors import UserError


def random_dataset(n: int, channels: int, size: int, seed: int = 0) -> NoisyDataset:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (n,), generator=g).numpy()
    return NoisyDataset(images, labels)


def torchvision_crop_flip(image: torch.Tensor, top: int, left: int, flip: bool, size: int, padding: int):
    out = TF.crop(TF.pad(image, [padding]), top, left, size, size)
    return TF.horizontal_flip(out) if flip else out


@pytest.mark.parametrize("name, channels, size", [("cifar10", 3, 32), ("digits", 1, 8)])
def test_augmented_epoch_equals_torchvision_pad_crop_flip(name, channels, size):
    data = random_dataset(40, channels, size)
    loader = TensorLoader(data, name, batch_size=16, device="cpu")
    _, test_transform = get_transforms(name)
    x = torch.cat([b[0] for b in loader.epoch(None, shuffle=False, augment=True,
                                              generator=torch.Generator().manual_seed(3))])
    params = loader.draw_augmentation(40, torch.Generator().manual_seed(3))
    expected = torch.stack([test_transform(torchvision_crop_flip(data.images[i], int(top), int(left), bool(flip),
                                                                 size, loader.padding))
                            for i, (top, left, flip) in enumerate(params.tolist())])
    assert torch.equal(x, expected)
    assert bool(params[:, 2].any()) == (name == "cifar10")  # digits never flip


def test_augmentation_distribution_matches_random_crop_and_flip():
    loader = TensorLoader(random_dataset(2, 3, 32), "cifar10", batch_size=2, device="cpu")
    params = loader.draw_augmentation(20000, torch.Generator().manual_seed(0))
    for column in (0, 1):  # offsets uniform over the 9 positions 0..2 * padding
        counts = torch.bincount(params[:, column], minlength=9)
        assert len(counts) == 9 and counts.min() > 0.9 * 20000 / 9 and counts.max() < 1.1 * 20000 / 9
    assert abs(params[:, 2].float().mean().item() - 0.5) < 0.02


@pytest.mark.parametrize("channels_last", [False, True])
def test_no_augmentation_equals_test_transform(channels_last):
    data = random_dataset(30, 3, 32)
    _, test_transform = get_transforms("cifar10")
    loader = TensorLoader(data, "cifar10", batch_size=8, device="cpu", channels_last=channels_last)
    batches = list(loader.epoch(None, shuffle=False, augment=False))
    x = torch.cat([b[0] for b in batches])
    assert torch.equal(x, torch.stack([test_transform(image) for image in data.images]))
    assert x.dtype == torch.float32
    assert batches[0][0].is_contiguous(memory_format=torch.channels_last) == channels_last


def test_epoch_visits_each_index_once_with_its_label():
    data = random_dataset(50, 1, 8)
    loader = TensorLoader(data, "digits", batch_size=7, device="cpu")
    subset = torch.randperm(50, generator=torch.Generator().manual_seed(1))[:33]
    batches = list(loader.epoch(subset, shuffle=True, augment=True, generator=torch.Generator().manual_seed(2)))
    assert [len(b[2]) for b in batches] == [7, 7, 7, 7, 5] and loader.num_batches(33) == 5
    index = torch.cat([b[2] for b in batches])
    assert torch.equal(index.sort().values, subset.sort().values)
    assert not torch.equal(index, subset)  # shuffled
    for _, y, idx in batches:
        assert y.dtype == torch.int64 and torch.equal(y, torch.from_numpy(data.noisy_labels)[idx])
    mask = torch.zeros(50, dtype=torch.bool)
    mask[subset] = True
    in_order = torch.cat([b[2] for b in loader.epoch(mask, shuffle=False, augment=False)])
    assert torch.equal(in_order, subset.sort().values)
    dropping = TensorLoader(data, "digits", batch_size=7, device="cpu", drop_last=True)
    assert [len(b[2]) for b in dropping.epoch(subset, shuffle=False, augment=False)] == [7] * 4


def test_same_seed_same_batches():
    data = random_dataset(40, 3, 32)
    loader = TensorLoader(data, "cifar10", batch_size=16, device="cpu")

    def run(seed):
        return list(loader.epoch(None, shuffle=True, augment=True, generator=torch.Generator().manual_seed(seed)))

    first, again, other = run(5), run(5), run(6)
    assert all(torch.equal(a, b) for ba, bb in zip(first, again) for a, b in zip(ba, bb))
    assert not torch.equal(first[0][0], other[0][0])


def test_bad_dataset_name_or_channels_raise_user_error():
    with pytest.raises(UserError, match="no augmentation settings"):
        TensorLoader(random_dataset(4, 3, 32), "mnist", batch_size=2, device="cpu")
    with pytest.raises(UserError, match="normalises 3 channels"):
        TensorLoader(random_dataset(4, 1, 8), "cifar10", batch_size=2, device="cpu")


def test_out_of_range_indices_are_refused():
    images = torch.zeros(5, 1, 8, 8, dtype=torch.uint8)
    loader = TensorLoader(NoisyDataset(images, np.arange(5) % 2), "digits", batch_size=2, device="cpu")
    for bad in ([0, -1], [4, 5]):
        with pytest.raises(ValueError, match=r"indices must lie in \[0, 5\)"):
            next(loader.epoch(torch.tensor(bad), shuffle=False, augment=False))
