"""CIFAR-N human labels: loading through ``build_datasets``, alignment checks, bad inputs, and a 1-epoch run."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from data_loader import build_datasets, make_noisy_labels
from data_loader.cifar_n import CIFAR_N_LABELS, cifar_n_path
from dynamic_selection import train as ds
from engine.args import add_common_args
from fine.errors import UserError
from tests.fixtures import cifar_arrays, write_cifar10, write_cifar100

N10, N100 = 100, 500


def human_labels(clean: np.ndarray, num_classes: int, seed: int, rate: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    flip = rng.random(len(clean)) < rate
    return np.where(flip, (clean + rng.integers(1, num_classes, len(clean))) % num_classes, clean)


def write_cifar10n(root: Path, **override) -> dict:
    """A CIFAR-10_human.pt in the published format (dict of numpy arrays) aligned with the tiny CIFAR-10 fixture."""
    clean = cifar_arrays(10, n_train=N10, n_test=20, seed=0).train_labels
    content = {"clean_label": clean.copy()}
    for i, key in enumerate(CIFAR_N_LABELS["cifar10"].values()):
        content[key] = human_labels(clean, 10, i, 0.1 + 0.1 * i)
    content.update(override)
    path = cifar_n_path("cifar10", root)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(content, path)
    return content


@pytest.fixture
def cifar10n(tmp_path):
    root = write_cifar10(tmp_path / "data", n_train=N10, n_test=20)
    return root, write_cifar10n(root)


@pytest.mark.parametrize("label", list(CIFAR_N_LABELS["cifar10"]))
def test_cifar10n_label_sets_load_aligned(cifar10n, label):
    root, content = cifar10n
    bundle = build_datasets("cifar10", root, noise_kind="human", noise_rate=0.5, seed=1, noise_label=label)
    expected = content[CIFAR_N_LABELS["cifar10"][label]]
    assert np.array_equal(bundle.train.noisy_labels, expected)
    assert np.array_equal(bundle.train.clean_labels, content["clean_label"])
    info = bundle.noise_info
    assert info["kind"] == "human" and info["label"] == label
    assert info["label_file"] == str(cifar_n_path("cifar10", root))
    assert info["noise_rate"] == pytest.approx((expected != content["clean_label"]).mean())
    assert not (root / "noisy_labels").exists()  # human labels are read, never generated or saved


def test_cifar10n_validation_split_keeps_alignment(cifar10n):
    root, content = cifar10n
    bundle = build_datasets("cifar10", root, noise_kind="human", noise_rate=0.5, seed=1, noise_label="worst",
                            val_size=20)
    assert len(bundle.train) == 80 and len(bundle.val) == 20
    images = cifar_arrays(10, n_train=N10, n_test=20, seed=0).train_data.reshape(-1, 3, 32, 32)
    rows = [int(np.flatnonzero((images == img.numpy()).all((1, 2, 3)))[0]) for img in bundle.train.images]
    assert np.array_equal(bundle.train.noisy_labels, content["worse_label"][rows])
    assert np.array_equal(bundle.train.clean_labels, content["clean_label"][rows])


def test_cifar100n_loads(tmp_path):
    root = write_cifar100(tmp_path / "data", n_train=N100, n_test=100)
    clean = cifar_arrays(100, n_train=N100, n_test=100, seed=0).train_labels
    noisy = human_labels(clean, 100, 0, 0.4)
    path = cifar_n_path("cifar100", root)
    path.parent.mkdir(parents=True)
    torch.save({"clean_label": clean, "noisy_label": noisy, "clean_coarse_label": clean // 5,
                "noisy_coarse_label": noisy // 5}, path)
    bundle = build_datasets("cifar100", root, noise_kind="human", noise_rate=0.0, seed=1, noise_label="noisy")
    assert np.array_equal(bundle.train.noisy_labels, noisy) and np.array_equal(bundle.train.clean_labels, clean)
    assert bundle.noise_info["noise_rate"] == pytest.approx((noisy != clean).mean())


def test_bad_files_are_refused(cifar10n):
    root, content = cifar10n
    path = cifar_n_path("cifar10", root)
    path.unlink()
    with pytest.raises(UserError, match=f"{path} is missing.*bash scripts/download_cifar_n.sh {root}"):
        build_datasets("cifar10", root, noise_kind="human", noise_rate=0.5, seed=1, noise_label="worst")
    cases = [({"worse_label": None}, "lacks the keys 'worse_label'"),
             ({"worse_label": content["worse_label"][:50]}, r"shape \(50,\).*has 100 samples"),
             ({"clean_label": np.roll(content["clean_label"], 1)},
              "does not match the CIFAR training set order; re-download")]
    for override, message in cases:
        bad = {k: v for k, v in {**content, **override}.items() if v is not None}
        torch.save(bad, path)
        with pytest.raises(UserError, match=message) as err:
            build_datasets("cifar10", root, noise_kind="human", noise_rate=0.5, seed=1, noise_label="worst")
        assert "\n" not in str(err.value)
    path.write_bytes(b"not a torch file")
    with pytest.raises(UserError, match="cannot be read"):
        build_datasets("cifar10", root, noise_kind="human", noise_rate=0.5, seed=1, noise_label="worst")


@pytest.mark.parametrize("dataset,kind,label,kwargs,message", [
    ("cifar10", "sym", "worst", {}, "--noise_label worst needs --noise_kind human"),
    ("cifar10", "human", None, {}, "needs --noise_label, one of aggre, random1, random2, random3, worst"),
    ("cifar100", "human", "worst", {}, "use one of noisy"),
    ("digits", "human", "worst", {}, "cifar10 and cifar100 only, not digits"),
    ("cifar10", "human", "worst", {"noise_file": "x.npy"}, "--noise_file and --noise_kind human"),
])
def test_inconsistent_options_are_refused(tmp_path, dataset, kind, label, kwargs, message):
    with pytest.raises(UserError, match=message):
        build_datasets(dataset, tmp_path, noise_kind=kind, noise_rate=0.5, seed=1, noise_label=label, **kwargs)


def test_human_noise_is_never_generated():
    with pytest.raises(UserError, match="human noise is read from the dataset.s label files"):
        make_noisy_labels(np.zeros(4, dtype=np.int64), "human", 0.5, num_classes=10, seed=0)


def test_noise_label_flag():
    parser = argparse.ArgumentParser()
    add_common_args(parser)
    args = parser.parse_args(["--dataset", "cifar10", "--noise_kind", "human", "--noise_label", "aggre"])
    assert args.noise_label == "aggre" and parser.parse_args([]).noise_label is None


def test_one_epoch_run_on_cifar10n(cifar10n, tmp_path):
    root, content = cifar10n
    summary = ds.main(ds.get_args_parser().parse_args([
        "--dataset", "cifar10", "--data_path", str(root), "--noise_kind", "human", "--noise_label", "worst",
        "--output", str(tmp_path / "runs"), "--device", "cpu", "--arch", "small_cnn", "--epochs", "1",
        "--method", "standard", "--val_size", "0", "--batch_size", "32"]))
    assert summary["finished"] and summary["noise_kind"] == "human" and summary["noise_label"] == "worst"
    assert "cifar10_human-worst" in summary["run_dir"]
    saved = json.loads((Path(summary["run_dir"]) / "args.json").read_text())
    assert saved["args"]["noise_label"] == "worst"
