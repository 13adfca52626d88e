"""The two training-data paths (a DataLoader over the dataset, or the images resident on the device) give the same
samples in the same batches, and both trainers' selection rounds see bit-identical features on either path.

Augmentations differ by design between the paths (torchvision draws from torch's global generator, the resident
path from its own); that they follow the same distribution is tests/test_tensor_loader.py's business. Nothing here
depends on training noise: a selection round at epoch 0 scores the freshly initialised networks.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import dividemix.train as dm
from data_loader import build_datasets, get_transforms
from data_loader.tensor_loader import TensorLoader
from dynamic_selection import train as ds
from engine.data import TrainBatches
from fine.distributed import ShardedSampler


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return build_datasets("digits", tmp_path_factory.mktemp("data"), noise_kind="sym", noise_rate=0.5, seed=1).train


def _batches(train, resident: bool, *, shuffle_seed: int | None, two_views: bool = False) -> TrainBatches:
    indices = torch.arange(3, len(train), 7)  # a selection: every 7th sample
    shuffle = None if shuffle_seed is None else torch.Generator().manual_seed(shuffle_seed)
    loader = TensorLoader(train, "digits", batch_size=16, device="cpu") if resident else None
    return TrainBatches(ShardedSampler(indices, shuffle), dataset=train, resident=loader, batch_size=16,
                        augment=torch.Generator().manual_seed(5), two_views=two_views)


@pytest.mark.parametrize("shuffle_seed", [None, 3])  # dynamic_selection's fixed epoch order; DivideMix's reshuffle
@pytest.mark.parametrize("two_views", [False, True])
def test_both_paths_serve_the_same_samples_in_the_same_batches(digits, shuffle_seed, two_views):
    passes = {}
    for resident in (False, True):
        batches = _batches(digits, resident, shuffle_seed=shuffle_seed, two_views=two_views)
        passes[resident] = [[(b[-1].tolist(), b[-2].tolist()) for b in batches] for _ in range(2)]
        assert len(passes[resident][0]) == len(batches) == -(-len(batches.sampler) // 16)
        for batch in batches:
            x, y, index = batch[0], batch[-2], batch[-1]
            assert x.shape == (len(index), 1, 8, 8) and x.dtype == torch.float32
            assert y.tolist() == digits.noisy_labels[index.numpy()].tolist()
            if two_views:  # two independent augmentations of the same samples
                assert batch[1].shape == x.shape and not torch.equal(batch[1], x)
    assert passes[False] == passes[True]
    first, second = passes[True]
    assert sorted(i for b, _ in first for i in b) == list(range(3, len(digits), 7))  # each sample once per pass
    assert (first == second) == (shuffle_seed is None)  # a fresh order per pass only when shuffling


def _round(tmp_path: Path, trainer, data_on_gpu: str, *flags: str) -> dict[str, np.lib.npyio.NpzFile]:
    argv = ["--dataset", "digits", "--data_path", str(tmp_path / "data"), "--output", str(tmp_path / data_on_gpu),
            "--device", "cpu", "--epochs", "1", "--batch_size", "64", "--data_on_gpu", data_on_gpu, *flags]
    summary = trainer.main(trainer.get_args_parser().parse_args(argv))
    return {p.name: np.load(p) for p in sorted((Path(summary["run_dir"]) / "selection").iterdir())}


@pytest.mark.parametrize("trainer, flags", [
    (ds, ["--method", "f-coteaching", "--warmup", "0", "--every", "1"]),
    (dm, ["--selector", "fine", "--warmup", "0", "--num_batches", "8"]),  # each network splits a draw of 8 x 64
    (dm, ["--selector", "loss-gmm", "--warmup", "0", "--num_batches", "8"]),
])
def test_selection_rounds_are_identical_on_both_paths(tmp_path, trainer, flags):
    loader_path, resident_path = _round(tmp_path, trainer, "off", *flags), _round(tmp_path, trainer, "on", *flags)
    assert list(loader_path) == list(resident_path) == ["round_000_net1.npz", "round_000_net2.npz"]
    for name, a in loader_path.items():
        b = resident_path[name]
        np.testing.assert_allclose(a["scores"], b["scores"], rtol=0, atol=1e-5)  # float32 batch sums differ
        np.testing.assert_array_equal(a["mask"], b["mask"])
        assert 0 < a["mask"].sum() < len(a["mask"])  # a real split, not all or nothing


@pytest.mark.parametrize("two_views", [False, True])
def test_without_augmentation_both_paths_serve_the_test_transform_images(digits, two_views):
    plain = digits.view(get_transforms("digits")[1])
    indices = torch.arange(3, len(digits), 7)
    for resident in (False, True):
        loader = TensorLoader(digits, "digits", batch_size=16, device="cpu") if resident else None
        batches = TrainBatches(ShardedSampler(indices, torch.Generator().manual_seed(3)), dataset=plain,
                               resident=loader, batch_size=16, augment=torch.Generator().manual_seed(5),
                               two_views=two_views, augment_images=False)
        for batch in batches:
            expected = torch.stack([plain[i][0] for i in batch[-1].tolist()])
            for view in batch[:2 if two_views else 1]:
                torch.testing.assert_close(view, expected, rtol=0, atol=1e-6)


def _metrics(tmp_path: Path, data_on_gpu: str, augment: str) -> list[float]:
    argv = ["--dataset", "digits", "--data_path", str(tmp_path / "data"), "--output", str(tmp_path / data_on_gpu),
            "--device", "cpu", "--epochs", "2", "--batch_size", "64", "--method", "standard", "--augment", augment,
            "--data_on_gpu", data_on_gpu, "--overwrite"]
    summary = ds.main(ds.get_args_parser().parse_args(argv))
    rows = (Path(summary["run_dir"]) / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["train/loss"] for line in rows]


def test_augment_off_reaches_both_paths_of_the_trainer(tmp_path):
    # Un-augmented, both paths feed the same images in the same order, so training follows the same path; augmented,
    # they draw their crops from different generators (by design) and part ways.
    off = [_metrics(tmp_path, path, "off") for path in ("off", "on")]
    np.testing.assert_allclose(off[0], off[1], rtol=1e-4)
    on = [_metrics(tmp_path, path, "on") for path in ("off", "on")]
    assert not np.allclose(on[0], on[1], rtol=1e-4)
