"""Users' own data: ImageFolder trees and .npz files (images, tables, signals) through ``build_datasets``, training
statistics for tables and signals, bad inputs, an MLP that learns a real table, and 1-epoch runs."""
from __future__ import annotations

import contextlib
import io
import json
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from sklearn.datasets import load_breast_cancer, load_wine

from data_loader import build_datasets
from data_loader.datasets import NoisyDataset
from data_loader.tensor_loader import TensorLoader
from data_loader.transforms import Standardize
from data_loader.user_data import IMAGE_SIZE
import dividemix.train as dm
from dynamic_selection import train as ds
from fine.errors import UserError
from fine.models import create_model

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


def stack_inputs(dataset) -> np.ndarray:
    """The transformed inputs of every item of ``dataset``, in order, as one float64 array."""
    return torch.stack([dataset[i][0] for i in range(len(dataset))]).double().numpy()


def split_table(data: np.ndarray, target: np.ndarray, n_train: int, seed: int = 0) -> dict:
    """A seeded random train/test split of a table as the .npz arrays."""
    order = np.random.default_rng(seed).permutation(len(target))
    train, test = order[:n_train], order[n_train:]
    return {"x_train": data[train], "y_train": target[train], "x_test": data[test], "y_test": target[test]}


# scikit-learn's wine table (178 x 13 float64, features on scales from 0.1 to 1,000; 3 classes) split 140 / 38
WINE = split_table(*load_wine(return_X_y=True), 140)


def write_table(path: Path, **override) -> dict:
    """``WINE`` as a .npz, every 5th training label moved to the next class (y_train), the originals as
    y_train_clean."""
    arrays = dict(WINE)
    clean = arrays["y_train"]
    arrays.update(y_train=np.where(np.arange(140) % 5 == 0, (clean + 1) % 3, clean), y_train_clean=clean)
    arrays.update(override)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return arrays


def signals(n: int, *, channels: int = 2, length: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, channels, length) float32 noisy sinusoids and their (n,) classes: class k of 3 has k + 1 cycles; channel c
    is scaled by 10 ** c and shifted by 5 c, so the channels' statistics differ."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    t = np.linspace(0, 1, length, endpoint=False)
    wave = np.sin(2 * np.pi * (labels[:, None, None] + 1) * t + rng.uniform(0, 2 * np.pi, (n, channels, 1)))
    scale, shift = 10.0 ** np.arange(channels)[:, None], 5.0 * np.arange(channels)[:, None]
    x = (wave + 0.3 * rng.standard_normal((n, channels, length))) * scale + shift
    return x.astype(np.float32), labels


def write_signals(path: Path, **override) -> dict:
    """60 training and 21 test signals (2 channels of length 32) from :func:`signals` as a .npz."""
    x_train, y_train = signals(60, seed=0)
    x_test, y_test = signals(21, seed=1)
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    arrays.update(override)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return arrays


def test_npz_table_is_standardised_with_training_statistics(tmp_path):
    arrays = write_table(tmp_path / "wine.npz")
    bundle = build_datasets("npz", tmp_path / "wine.npz", noise_kind="none", noise_rate=0.0, seed=1)
    assert bundle.kind == "table" and bundle.num_classes == 3 and len(bundle.train) == 140 and len(bundle.test) == 38
    x_train = arrays["x_train"].astype(np.float32)
    assert bundle.train.images.dtype == torch.float32 and np.array_equal(bundle.train.images.numpy(), x_train)
    assert np.array_equal(bundle.train.noisy_labels, arrays["y_train"])
    assert np.array_equal(bundle.train.clean_labels, arrays["y_train_clean"])
    assert bundle.noise_info["noise_rate"] == pytest.approx(0.2)
    # numpy reference: per-feature mean and population std of the float32 training rows
    mean, std = x_train.astype(np.float64).mean(0), x_train.astype(np.float64).std(0)
    stats = json.loads(json.dumps(bundle.standardization))
    np.testing.assert_allclose(stats["mean"], mean, rtol=1e-6)
    np.testing.assert_allclose(stats["std"], std, rtol=1e-6)
    np.testing.assert_allclose(stack_inputs(bundle.train), (x_train - mean) / std, atol=1e-5)
    x_test = arrays["x_test"].astype(np.float32)
    standardised_test = stack_inputs(bundle.test)
    np.testing.assert_allclose(standardised_test, (x_test - mean) / std, atol=1e-5)
    own = (x_test - x_test.mean(0)) / x_test.std(0)
    assert np.abs(standardised_test - own).max() > 0.1  # the test set's own statistics would differ
    # no augmentation: one plain, picklable transform for every split
    assert bundle.train_transform is bundle.test_transform and isinstance(bundle.test_transform, Standardize)
    restored = pickle.loads(pickle.dumps(bundle.test_transform))
    assert torch.equal(restored(bundle.test.images[0]), bundle.test[0][0])


def test_npz_table_statistics_leave_out_the_validation_split(tmp_path):
    write_table(tmp_path / "wine.npz")
    bundle = build_datasets("npz", tmp_path / "wine.npz", noise_kind="none", noise_rate=0.0, seed=1, val_size=30)
    assert len(bundle.train) == 110 and len(bundle.val) == 30
    rows = bundle.train.images.double().numpy()
    mean, std = rows.mean(0), rows.std(0)
    np.testing.assert_allclose(bundle.standardization["mean"], mean, rtol=1e-6)
    np.testing.assert_allclose(bundle.standardization["std"], std, rtol=1e-6)
    full = np.concatenate([rows, bundle.val.images.double().numpy()])
    assert not np.allclose(full.mean(0), mean, rtol=1e-3)  # the 140-row statistics would differ
    np.testing.assert_allclose(stack_inputs(bundle.val), (bundle.val.images.double().numpy() - mean) / std, atol=1e-5)


def test_npz_signals_are_standardised_per_channel(tmp_path):
    arrays = write_signals(tmp_path / "sig.npz")
    bundle = build_datasets("npz", tmp_path / "sig.npz", noise_kind="none", noise_rate=0.0, seed=1)
    assert bundle.kind == "signal" and bundle.num_classes == 3 and bundle.train.images.shape == (60, 2, 32)
    x_train, x_test = arrays["x_train"].astype(np.float64), arrays["x_test"].astype(np.float64)
    mean, std = x_train.mean((0, 2)), x_train.std((0, 2))
    assert std[1] > 5 * std[0]  # the channels need their own statistics
    np.testing.assert_allclose(bundle.standardization["mean"], mean, rtol=1e-5)
    np.testing.assert_allclose(bundle.standardization["std"], std, rtol=1e-5)
    expected = (x_test - mean[:, None]) / std[:, None]
    np.testing.assert_allclose(stack_inputs(bundle.test), expected, atol=1e-5)
    assert bundle.train_transform is bundle.test_transform


def test_npz_kind_decides_what_a_2d_array_is(tmp_path):
    x, y = signals(30, channels=1)
    x = x[:, 0]  # (30, 32)
    arrays = {"x_train": x, "y_train": y, "x_test": x[:6], "y_test": y[:6]}
    np.savez(tmp_path / "plain.npz", **arrays)
    np.savez(tmp_path / "signal.npz", **arrays, kind="signal")
    np.savez(tmp_path / "table.npz", **arrays, kind=np.array(b"table"))
    kw = dict(noise_kind="none", noise_rate=0.0, seed=1)
    for name, kind, shape in (("plain", "table", (30, 32)), ("signal", "signal", (30, 1, 32)),
                              ("table", "table", (30, 32))):
        bundle = build_datasets("npz", tmp_path / f"{name}.npz", **kw)
        assert bundle.kind == kind and tuple(bundle.train.images.shape) == shape
    signal = build_datasets("npz", tmp_path / "signal.npz", **kw)
    assert np.allclose(signal.standardization["mean"], [x.astype(np.float64).mean()], rtol=1e-5)  # one channel
    write_npz(tmp_path / "images.npz", kind="image")
    assert build_datasets("npz", tmp_path / "images.npz", **kw).standardization is None


def test_npz_whole_number_float_labels_are_cast(tmp_path):
    labels = WINE["y_test"]
    write_table(tmp_path / "wine.npz", y_test=labels.astype(np.float32))
    bundle = build_datasets("npz", tmp_path / "wine.npz", noise_kind="none", noise_rate=0.0, seed=1)
    assert bundle.test.noisy_labels.dtype == np.int64 and np.array_equal(bundle.test.noisy_labels, labels)


def _with_bad(x: np.ndarray, nan: int, inf: int) -> np.ndarray:
    x = x.copy()
    x.flat[:nan] = np.nan
    x.flat[nan:nan + inf] = -np.inf
    return x


@pytest.mark.parametrize("override,message", [
    ({"x_train": _with_bad(WINE["x_train"], 2, 1)}, "x_train holds 2 NaN and 1 infinite values \\(of 1820\\)"),
    ({"x_test": _with_bad(WINE["x_test"], 0, 3)}, "x_test holds 0 NaN and 3 infinite values"),
    ({"x_train": np.full((140, 13), 1e39)}, "beyond float32's range"),
    ({"y_train": WINE["y_train"][:139]}, "y_train is int64 of shape \\(139,\\), expected \\(140,\\) .* of x_train"),
    ({"y_test": WINE["y_test"][:-1]}, "y_test is int64 of shape \\(37,\\), expected \\(38,\\) .* of x_test"),
    ({"y_train": WINE["y_train"] + 0.5 * (np.arange(140) < 3)}, "y_train has 3 of 140 labels that are not whole "
                                                                 "numbers \\(the first: 2.5\\)"),
    ({"y_train_clean": np.full(140, np.nan)}, "y_train_clean has 140 of 140 labels that are not whole numbers"),
    ({"y_train": WINE["y_train"].astype(str)}, "y_train is <U21 of shape \\(140,\\), expected \\(140,\\) integer"),
    ({"x_test": WINE["x_test"][:, :12]}, "x_train has 13 features but x_test has 12; store the same features"),
    ({"x_test": WINE["x_test"][:, :, None]}, "x_test is float64 of shape \\(38, 13, 1\\) but kind is table"),
    ({"x_train": np.zeros((0, 13)), "y_train": np.zeros(0, dtype=np.int64)}, "x_train holds no samples"),
    ({"x_test": np.zeros((0, 13)), "y_test": np.zeros(0, dtype=np.int64)}, "x_test holds no samples"),
    ({"x_train": np.zeros((140, 0)), "x_test": np.zeros((38, 0))}, "no values per sample; store at least one feature"),
    ({"kind": "tabular"}, "unknown kind 'tabular'; save kind as one of the strings image, table, signal"),
    ({"kind": 2}, "unknown kind 2"),
    ({"kind": "image"}, "x_train is float64 of shape \\(140, 13\\); store uint8 images"),
    ({"x_train": WINE["x_train"][:, 0]}, "x_train is float64 of shape \\(140,\\); store uint8 images as .*, tables"),
    ({"x_train": WINE["x_train"].astype(str)}, "x_train is <U.* but kind is table; store a numeric \\(N, D\\)"),
])
def test_npz_table_errors(tmp_path, override, message):
    write_table(tmp_path / "bad.npz", **override)
    with pytest.raises(UserError, match=message) as err:
        build_datasets("npz", tmp_path / "bad.npz", noise_kind="none", noise_rate=0.0, seed=1)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("override,message", [
    ({"x_test": signals(21, channels=3)[0]}, "x_train signals have 2 channels but x_test signals have 3"),
    ({"x_test": signals(21, length=30)[0]}, "x_train signals have length 32 but x_test signals have length 30; crop"),
    ({"x_test": signals(21)[0][:, 0]}, "x_train signals have 2 channels but x_test signals have 1"),  # (M, L): 1
    ({"x_test": signals(21)[0][..., None]}, "x_test is float32 of shape \\(21, 2, 32, 1\\) but kind is signal"),
    ({"kind": "table"}, "x_train is float32 of shape \\(60, 2, 32\\) but kind is table"),
])
def test_npz_signal_errors(tmp_path, override, message):
    write_signals(tmp_path / "bad.npz", **override)
    with pytest.raises(UserError, match=message) as err:
        build_datasets("npz", tmp_path / "bad.npz", noise_kind="none", noise_rate=0.0, seed=1)
    assert "\n" not in str(err.value)


def test_synthetic_noise_on_a_table(tmp_path):
    arrays = write_table(tmp_path / "wine.npz")
    for kind in ("sym", "instance"):
        bundle = build_datasets("npz", tmp_path / "wine.npz", noise_kind=kind, noise_rate=0.4, seed=1)
        assert np.array_equal(bundle.train.clean_labels, arrays["y_train_clean"])
        assert 0.2 <= bundle.noise_info["noise_rate"] <= 0.5
        assert (tmp_path / "noisy_labels" / f"npz-wine_{kind}_0.4_seed1.npy").exists()


def test_noisy_dataset_holds_float_samples_and_tensor_loader_refuses_them(tmp_path):
    rows = torch.randn(5, 3)
    data = NoisyDataset(rows, np.arange(5) % 2, transform=Standardize(torch.ones(3), 2 * torch.ones(3)))
    x, y, i = data[4]
    assert torch.equal(x, (rows[4] - 1) / 2) and (y, i) == (0, 4)
    assert torch.equal(data.subset(np.array([4, 0])).images, rows[[4, 0]])
    for bad in (torch.zeros(5, 3, dtype=torch.int64), torch.zeros(5, 3, dtype=torch.uint8), torch.zeros(5)):
        with pytest.raises(ValueError, match="uint8 \\(N, C, H, W\\) tensor or a float"):
            NoisyDataset(bad, np.arange(5) % 2)
    write_table(tmp_path / "wine.npz")
    bundle = build_datasets("npz", tmp_path / "wine.npz", noise_kind="none", noise_rate=0.0, seed=1)
    with pytest.raises(UserError, match="serves uint8 .* images only, but 'npz' holds torch.float32 samples of shape "
                                        "\\(13,\\).*use --data_on_gpu off"):
        TensorLoader(bundle.train, "npz", batch_size=8, device="cpu")


def test_standardize_maps_constant_features_to_zero():
    x = torch.tensor([[1e6, 0.1, 3.0], [1e6, 0.1, 5.0], [1e6, 0.1, 7.0]], dtype=torch.float32)
    fitted = Standardize.fit(x, chunk=2)  # statistics accumulated over chunks of 2 rows
    torch.testing.assert_close(fitted(x[0]), torch.tensor([0.0, 0.0, -(1.5 ** 0.5)]))
    assert torch.equal(fitted(x)[:, :2], torch.zeros(3, 2))  # constant columns: exactly 0
    assert fitted.to_dict()["std"] == pytest.approx([1.0, 1.0, (8 / 3) ** 0.5])


def mlp_test_accuracy(path: Path, seed: int, epochs: int = 10) -> float:
    """Test accuracy of an MLP trained with plain SGD (lr 0.05, momentum 0.9, wd 5e-4, batch 32) on the .npz table."""
    bundle = build_datasets("npz", path, noise_kind="none", noise_rate=0.0, seed=seed)
    x, y = torch.from_numpy(stack_inputs(bundle.train)).float(), torch.from_numpy(bundle.train.noisy_labels)
    x_test = torch.from_numpy(stack_inputs(bundle.test)).float()
    torch.manual_seed(seed)
    model = create_model("mlp", bundle.num_classes, input_shape=tuple(bundle.train[0][0].shape))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    for _ in range(epochs):
        model.train()
        for batch in torch.randperm(len(y)).split(32):
            loss = F.cross_entropy(model(x[batch]), y[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        return (model(x_test).argmax(1).numpy() == bundle.test.noisy_labels).mean()


def test_mlp_learns_breast_cancer_table(tmp_path):
    cancer = load_breast_cancer()  # 569 x 30, 2 classes
    np.savez(tmp_path / "cancer.npz", **split_table(cancer.data, cancer.target, 400))
    # 10 epochs reach 94.7-97.0% test accuracy over seeds 0-9 (this 2-core CPU); the majority class is 61.5%
    assert mlp_test_accuracy(tmp_path / "cancer.npz", seed=0) >= 0.92


def test_one_epoch_run_on_table(tmp_path):
    write_table(tmp_path / "wine.npz")
    summary = ds.main(ds.get_args_parser().parse_args([
        "--dataset", "npz", "--data_path", str(tmp_path / "wine.npz"), "--noise_kind", "none",
        "--output", str(tmp_path / "runs"), "--device", "cpu", "--arch", "mlp", "--epochs", "2", "--warmup", "1",
        "--every", "1", "--method", "fine", "--batch_size", "32"]))
    assert summary["finished"] and summary["dataset"] == "npz" and summary["selection"] is not None
    assert summary["last_test_acc"] >= 70.0  # 79-92% over seeds 1-6 after 2 epochs on 20% noise; majority class 50%


@pytest.mark.parametrize("writer, arch", [(write_table, "mlp"), (write_signals, "cnn1d"), (write_npz, None)])
def test_recipes_follow_what_the_npz_holds_without_loading_it(tmp_path, writer, arch):
    writer(tmp_path / "data.npz")
    argv = ["--dataset", "npz", "--data_path", str(tmp_path / "data.npz"), "--noise_kind", "none", "--dry_run"]
    with contextlib.redirect_stdout(io.StringIO()):
        config = ds.main(ds.get_args_parser().parse_args(argv))
        dividemix = dm.main(dm.get_args_parser().parse_args(argv))
    if arch is None:  # images: each trainer's CIFAR-10 recipe, with DivideMix's default lambda_u
        assert (config["arch"], dividemix["arch"], dividemix["lambda_u"]) == ("resnet34", "preact_resnet18", 25.0)
    else:
        assert config["arch"] == dividemix["arch"] == arch
        # tables and signals are not augmented, so DivideMix's unlabelled loss is off by default
        assert (config["epochs"], config["warmup"], dividemix["lambda_u"]) == (60, 10, 0.0)


def test_a_table_run_saves_its_standardisation(tmp_path):
    write_table(tmp_path / "wine.npz")
    summary = ds.main(ds.get_args_parser().parse_args([
        "--dataset", "npz", "--data_path", str(tmp_path / "wine.npz"), "--noise_kind", "none",
        "--output", str(tmp_path / "runs"), "--device", "cpu", "--epochs", "1", "--method", "standard"]))
    saved = json.loads((Path(summary["run_dir"]) / "standardization.json").read_text())
    train = WINE["x_train"]
    assert saved["kind"] == "table"
    np.testing.assert_allclose(saved["mean"], train.mean(0), rtol=1e-5)
    np.testing.assert_allclose(saved["std"], train.std(0), rtol=1e-4)
    assert "/npz-wine_clean/" in summary["run_dir"]  # runs on different files never share a directory


@pytest.mark.parametrize("override,message", [
    (dict(y_train=np.full(140, 2), y_train_clean=None), "every training label is class 2"),
    (dict(y_test=np.where(np.arange(38) == 0, 5, WINE["y_test"])), "test labels hold class(es) 5 that no training"),
])
def test_degenerate_labels_are_refused_in_one_line(tmp_path, override, message):
    write_table(tmp_path / "wine.npz", **override)
    with pytest.raises(UserError, match=re.escape(message)) as err:
        build_datasets("npz", tmp_path / "wine.npz", noise_kind="none", noise_rate=None, seed=0)
    assert "\n" not in str(err.value)


def test_a_class_too_small_for_a_mixture_warns_and_the_run_finishes(tmp_path):
    labels = np.where(np.arange(140) == 7, 3, WINE["y_train"])  # class 3: one sample
    write_table(tmp_path / "wine.npz", y_train=labels, y_train_clean=None)
    with pytest.warns(UserWarning, match=r"class\(es\) 3 have fewer than 2 training samples"):
        with contextlib.redirect_stdout(io.StringIO()):
            summary = ds.main(ds.get_args_parser().parse_args([
                "--dataset", "npz", "--data_path", str(tmp_path / "wine.npz"), "--noise_kind", "none",
                "--output", str(tmp_path / "runs"), "--device", "cpu", "--epochs", "2", "--warmup", "1",
                "--every", "1", "--batch_size", "32"]))
    assert summary["finished"]


@pytest.mark.parametrize("writer", [write_table, write_signals])
@pytest.mark.parametrize("selector", ["loss-gmm", "fine"])
def test_dividemix_runs_on_tables_and_signals(tmp_path, writer, selector):
    """Their two views are the same standardised sample (no augmentation); the recipe picks mlp or cnn1d."""
    writer(tmp_path / "data.npz")
    with contextlib.redirect_stdout(io.StringIO()):
        summary = dm.main(dm.get_args_parser().parse_args([
            "--dataset", "npz", "--data_path", str(tmp_path / "data.npz"), "--noise_kind", "none", "--selector",
            selector, "--output", str(tmp_path / "runs"), "--device", "cpu", "--epochs", "2", "--warmup", "1",
            "--batch_size", "32"]))
    assert summary["finished"] and summary["arch"] == ("mlp" if writer is write_table else "cnn1d")
