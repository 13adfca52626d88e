"""Users' own data: ImageFolder trees and .npz files through ``build_datasets``, bad inputs, and a 1-epoch run."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from data_loader import build_datasets
from data_loader.user_data import IMAGE_SIZE
from dynamic_selection import train as ds
from fine.errors import UserError

CLASSES = ("cat", "dog", "fox")


def write_folder(root: Path, per_class: int = 6, n_test: int = 2, seed: int = 0) -> dict:
    """PNG files of uneven sizes in train/<class>/ and test/<class>/; each class has its own colour."""
    rng = np.random.default_rng(seed)
    colours = {}
    for split, n in (("train", per_class), ("test", n_test)):
        for k, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = np.full((10 + i, 12, 3), 60 * k + 20, dtype=np.uint8)
                pixels[..., 1] = rng.integers(0, 256)
                Image.fromarray(pixels).save(folder / f"img_{i:02d}.png")
                colours[split, k, i] = 60 * k + 20
    return colours


def test_folder_loads_in_class_then_file_order(tmp_path):
    write_folder(tmp_path)
    bundle = build_datasets("folder", tmp_path, noise_kind="none", noise_rate=0.0, seed=1)
    assert bundle.num_classes == 3 and len(bundle.train) == 18 and len(bundle.test) == 6
    assert bundle.train.images.shape == (18, 3, IMAGE_SIZE, IMAGE_SIZE) and bundle.train.images.dtype == torch.uint8
    expected = np.repeat(np.arange(3), 6)
    assert np.array_equal(bundle.train.noisy_labels, expected) and bundle.train.clean_labels is None
    assert np.array_equal(bundle.train.images[:, 0, 0, 0].numpy(), 60 * expected + 20)  # red channel = class colour
    assert np.array_equal(bundle.test.noisy_labels, np.repeat(np.arange(3), 2))
    assert bundle.noise_info["noise_rate"] is None
    # normalisation uses the training images' statistics: the test view of the training set is standardised
    x = torch.stack([bundle.test_transform(img) for img in bundle.train.images])
    assert torch.allclose(x.mean((0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(x.std((0, 2, 3), unbiased=False), torch.ones(3), atol=1e-3)
    torch.manual_seed(0)
    assert bundle.train_transform(bundle.train.images[0]).shape == (3, IMAGE_SIZE, IMAGE_SIZE)


def test_folder_noisy_label_file_makes_folder_labels_clean(tmp_path):
    write_folder(tmp_path)
    noisy = (np.repeat(np.arange(3), 6) + (np.arange(18) % 3 == 0)) % 3
    np.save(tmp_path / "noisy_labels.npy", noisy)
    bundle = build_datasets("folder", tmp_path, noise_kind="none", noise_rate=0.0, seed=1, val_size=3)
    assert len(bundle.train) == 15 and len(bundle.val) == 3
    full = build_datasets("folder", tmp_path, noise_kind="none", noise_rate=0.0, seed=1)
    assert np.array_equal(full.train.noisy_labels, noisy)
    assert np.array_equal(full.train.clean_labels, np.repeat(np.arange(3), 6))
    assert full.noise_info["noise_rate"] == pytest.approx(6 / 18)
    sym = build_datasets("folder", tmp_path, noise_kind="sym", noise_rate=0.5, seed=1)
    assert np.array_equal(sym.train.clean_labels, np.repeat(np.arange(3), 6))
    assert (tmp_path / "noisy_labels" / "folder_sym_0.5_seed1.npy").exists()


@pytest.mark.parametrize("breakage,message", [
    ("no_test", "needs .*test/<class>/<images>"),
    ("empty_class", "holds no images"),
    ("unknown_test_class", "has no training folder"),
    ("bad_label_file", "holds int64 labels of shape \\(5,\\) but the training folder has 18 images"),
    ("corrupt_image", "cannot read image"),
    ("synthetic_without_clean", "has only noisy labels.*use --noise_kind none"),
])
def test_folder_errors(tmp_path, breakage, message):
    write_folder(tmp_path)
    kind = "none"
    if breakage == "no_test":
        for f in (tmp_path / "test").rglob("*.png"):
            f.unlink()
        for d in (tmp_path / "test").iterdir():
            d.rmdir()
        (tmp_path / "test").rmdir()
    elif breakage == "empty_class":
        (tmp_path / "train" / "emu").mkdir()
    elif breakage == "unknown_test_class":
        (tmp_path / "test" / "owl").mkdir()
    elif breakage == "bad_label_file":
        np.save(tmp_path / "noisy_labels.npy", np.zeros(5, dtype=np.int64))
    elif breakage == "corrupt_image":
        (tmp_path / "train" / "cat" / "zz.png").write_bytes(b"not a png")
    else:
        kind = "sym"
    with pytest.raises(UserError, match=message) as err:
        build_datasets("folder", tmp_path, noise_kind=kind, noise_rate=0.5, seed=1)
    assert "\n" not in str(err.value)


def test_missing_folder(tmp_path):
    with pytest.raises(UserError, match="--dataset folder needs"):
        build_datasets("folder", tmp_path / "nope", noise_kind="none", noise_rate=0.0, seed=1)


def write_npz(path: Path, *, channels_last: bool = True, **override) -> dict:
    rng = np.random.default_rng(0)
    shape = (40, 16, 16, 3) if channels_last else (40, 16, 16)
    clean = np.arange(40) % 4
    arrays = {"x_train": rng.integers(0, 256, shape, dtype=np.uint8), "y_train": (clean + (np.arange(40) % 5 == 0)) % 4,
              "y_train_clean": clean, "x_test": rng.integers(0, 256, (8, *shape[1:]), dtype=np.uint8),
              "y_test": np.arange(8) % 4}
    arrays.update(override)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return arrays


def test_npz_rgb_and_grayscale(tmp_path):
    path = tmp_path / "mine.npz"
    arrays = write_npz(path)
    bundle = build_datasets("npz", path, noise_kind="none", noise_rate=0.0, seed=1, val_size=8)
    full = build_datasets("npz", path, noise_kind="none", noise_rate=0.0, seed=1)
    assert full.num_classes == 4 and len(bundle.train) == 32 and len(bundle.val) == 8
    assert torch.equal(full.train.images, torch.from_numpy(arrays["x_train"]).permute(0, 3, 1, 2))
    assert np.array_equal(full.train.noisy_labels, arrays["y_train"])
    assert np.array_equal(full.train.clean_labels, arrays["y_train_clean"])
    assert full.noise_info["noise_rate"] == pytest.approx(0.2)
    sym = build_datasets("npz", path, noise_kind="sym", noise_rate=0.4, seed=1)
    assert np.array_equal(sym.train.clean_labels, arrays["y_train_clean"])
    assert (tmp_path / "noisy_labels" / "npz-mine_sym_0.4_seed1.npy").exists()
    gray = tmp_path / "gray.npz"
    arrays = write_npz(gray, channels_last=False, y_train_clean=None)
    bundle = build_datasets("npz", gray, noise_kind="none", noise_rate=0.0, seed=1)
    assert bundle.train.images.shape == (40, 1, 16, 16) and bundle.train.clean_labels is None
    assert bundle.train_transform(bundle.train.images[0]).shape == (1, 16, 16)


@pytest.mark.parametrize("override,message", [
    ({"y_test": None}, "lacks the arrays y_test"),
    ({"x_test": np.zeros((8, 15, 16, 3), dtype=np.uint8)}, "x_train images are .* but x_test images are"),
    ({"y_train": np.zeros(39, dtype=np.int64)}, "y_train is int64 of shape \\(39,\\), expected \\(40,\\)"),
    ({"x_train": np.zeros((40, 16, 16, 3), dtype=np.float32)}, "store uint8 images"),
    ({"y_test": -np.ones(8, dtype=np.int64)}, "negative labels"),
])
def test_npz_errors(tmp_path, override, message):
    path = tmp_path / "bad.npz"
    write_npz(path, **override)
    with pytest.raises(UserError, match=message) as err:
        build_datasets("npz", path, noise_kind="none", noise_rate=0.0, seed=1)
    assert "\n" not in str(err.value)


def test_missing_npz(tmp_path):
    with pytest.raises(UserError, match="existing .npz file"):
        build_datasets("npz", tmp_path / "nope.npz", noise_kind="none", noise_rate=0.0, seed=1)


def test_one_epoch_run_on_folder(tmp_path):
    write_folder(tmp_path / "data")
    summary = ds.main(ds.get_args_parser().parse_args([
        "--dataset", "folder", "--data_path", str(tmp_path / "data"), "--noise_kind", "none",
        "--output", str(tmp_path / "runs"), "--device", "cpu", "--arch", "small_cnn", "--epochs", "1",
        "--method", "standard", "--batch_size", "8"]))
    assert summary["finished"] and summary["dataset"] == "folder" and summary["selection"] is None
    assert 0.0 <= summary["last_test_acc"] <= 100.0
