"""Fashion-MNIST: idx fixtures (gzipped and plain, flat and torchvision layouts) read exactly, one-line errors, the
asym map through build_datasets, saved noise (also for a read-only data folder), the GPU-resident loader against the
torchvision transforms, the CPU and GPU models on 1x28x28, and the real files where installed."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.datasets import FashionMNIST
from torchvision.transforms.v2 import functional as TF

from data_loader import (FASHION_MNIST_CLASSES, NORMALIZATION, asym_class_map, build_datasets, get_transforms,
                         label_cache_root, load_fashion_mnist, make_noisy_labels, noisy_label_path)
from data_loader.tensor_loader import TensorLoader
from fine.errors import UserError
from fine.models import create_model
from tests.fixtures import deny_writes_below, fashion_arrays, write_fashion_mnist, write_idx

REAL = Path("/usr/share/datasets/fashion-mnist")
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def listing(folder: Path) -> list[tuple[str, int, float]]:
    """Every path under ``folder`` with its size and modification time."""
    return sorted((str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime) for p in folder.rglob("*"))


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("torchvision_layout", [False, True])
def test_fixture_round_trips_exactly(tmp_path, gz, torchvision_layout):
    root = write_fashion_mnist(tmp_path, n_train=50, n_test=20, seed=3, gz=gz, torchvision_layout=torchvision_layout)
    before = listing(tmp_path)
    data = load_fashion_mnist(root)
    expected = fashion_arrays(n_train=50, n_test=20, seed=3)
    assert data.train_images.shape == (50, 1, 28, 28) and data.test_images.shape == (20, 1, 28, 28)
    assert data.train_images.dtype == np.uint8 and data.train_labels.dtype == np.int64
    assert np.array_equal(data.train_images[:, 0], expected.train_images)
    assert np.array_equal(data.test_images[:, 0], expected.test_images)
    assert np.array_equal(data.train_labels, expected.train_labels)
    assert np.array_equal(data.test_labels, expected.test_labels)
    assert data.classes == list(FASHION_MNIST_CLASSES) and data.classes[6] == "Shirt"
    assert listing(tmp_path) == before  # nothing written next to the data (no decompressed copy, no processed/)


def test_fixture_is_what_torchvision_reads(tmp_path):
    """torchvision's own FashionMNIST class reads the plain files of the torchvision layout to the same arrays."""
    root = write_fashion_mnist(tmp_path, n_train=30, n_test=10, seed=1, gz=False, torchvision_layout=True)
    ours = load_fashion_mnist(root)
    for train, images, labels in ((True, ours.train_images, ours.train_labels),
                                  (False, ours.test_images, ours.test_labels)):
        theirs = FashionMNIST(str(root), train=train)
        assert np.array_equal(theirs.data.numpy(), images[:, 0]) and np.array_equal(theirs.targets.numpy(), labels)


def test_torchvision_download_layout_with_both_forms_reads_the_plain_files(tmp_path):
    """torchvision's download keeps each .gz beside its extracted file; the extracted one is read (no decompression)."""
    write_fashion_mnist(tmp_path, n_train=30, n_test=10, seed=2, gz=True, torchvision_layout=True)
    write_fashion_mnist(tmp_path, n_train=30, n_test=10, seed=9, gz=False, torchvision_layout=True)
    data = load_fashion_mnist(tmp_path)
    assert np.array_equal(data.train_images[:, 0], fashion_arrays(n_train=30, n_test=10, seed=9).train_images)


def one_line_user_error(call, *words: str) -> None:
    """``call()`` raises a one-line UserError containing every one of ``words``."""
    with pytest.raises(UserError) as err:
        call()
    message = str(err.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message


def test_missing_folder_or_files_name_the_path_and_the_fix(tmp_path):
    fix = ("apt-get install dataset-fashion-mnist", "--data_path /usr/share/datasets/fashion-mnist",
           "torchvision.datasets.FashionMNIST")
    one_line_user_error(lambda: load_fashion_mnist(tmp_path / "nowhere"), f"{tmp_path / 'nowhere'} does not exist",
                        *fix)
    one_line_user_error(lambda: build_datasets("fashion_mnist", tmp_path, noise_kind="sym", noise_rate=0.2, seed=0),
                        f"no *-idx?-ubyte[.gz] files in {tmp_path} or {tmp_path / 'FashionMNIST' / 'raw'}", *fix)
    root = write_fashion_mnist(tmp_path / "partial")
    (root / "t10k-labels-idx1-ubyte.gz").unlink()
    one_line_user_error(lambda: load_fashion_mnist(root), f"{root / 't10k-labels-idx1-ubyte'}[.gz] is missing", *fix)


def test_corrupt_files_are_one_line_errors(tmp_path):
    cases = {
        "not gzip": ("train-images-idx3-ubyte.gz", b"this is not gzip data", "not a valid gzip file"),
        "truncated gzip": ("train-labels-idx1-ubyte.gz", None, "not a valid gzip file"),
        "bad magic": ("train-images-idx3-ubyte.gz", gzip.compress(b"\x00\x00\x08\x07" + bytes(64)), "corrupt"),
        "short payload": ("t10k-images-idx3-ubyte", None, "corrupt"),
    }
    for case, (name, content, words) in cases.items():
        root = write_fashion_mnist(tmp_path / case.replace(" ", "_"), gz=name.endswith(".gz"))
        path = root / name
        if case == "truncated gzip":
            content = path.read_bytes()[:-20]
        if case == "short payload":
            content = path.read_bytes()[:-100]
        path.write_bytes(content)
        one_line_user_error(lambda: load_fashion_mnist(root), str(path), words, "apt-get install dataset-fashion-mnist")


def test_mismatched_counts_sizes_and_labels_are_refused(tmp_path):
    root = write_fashion_mnist(tmp_path / "count", n_train=30)
    write_idx(root / "train-labels-idx1-ubyte.gz", np.zeros(29, dtype=np.uint8))
    one_line_user_error(lambda: load_fashion_mnist(root), "30 images but 29 labels")
    root = write_fashion_mnist(tmp_path / "size")
    write_idx(root / "t10k-images-idx3-ubyte.gz", np.zeros((20, 32, 32), dtype=np.uint8))
    one_line_user_error(lambda: load_fashion_mnist(root), "(32, 32) images, not 28x28")
    root = write_fashion_mnist(tmp_path / "label")
    write_idx(root / "t10k-labels-idx1-ubyte.gz", np.full(20, 10, dtype=np.uint8))
    one_line_user_error(lambda: load_fashion_mnist(root), "label 10, outside [0, 10)")


def test_build_datasets_bundle_split_and_normalisation(tmp_path):
    root = write_fashion_mnist(tmp_path, n_train=60, n_test=20, seed=0)
    expected = fashion_arrays(n_train=60, n_test=20, seed=0)
    bundle = build_datasets("fashion_mnist", root, noise_kind="sym", noise_rate=0.5, seed=1, val_size=20)
    assert bundle.num_classes == 10 and len(bundle.train) == 40 and len(bundle.val) == 20 and len(bundle.test) == 20
    assert np.array_equal(np.bincount(bundle.val.clean_labels, minlength=10), np.full(10, 2))
    full_noisy = make_noisy_labels(expected.train_labels, "sym", 0.5, num_classes=10, seed=1)
    assert np.array_equal(np.sort(np.concatenate([bundle.train.noisy_labels, bundle.val.noisy_labels])),
                          np.sort(full_noisy))
    assert np.array_equal(bundle.test.clean_labels, expected.test_labels)
    x, y, i = bundle.test[4]
    (mean,), (std,) = NORMALIZATION["fashion_mnist"]
    raw = torch.from_numpy(expected.test_images[4]).float()[None] / 255
    assert x.shape == (1, 28, 28) and torch.allclose(x, (raw - mean) / std, atol=1e-5)
    assert (y, i) == (int(expected.test_labels[4]), 4)
    assert bundle.train[0][0].shape == (1, 28, 28)


def test_asym_noise_through_build_datasets_has_the_exact_transition(tmp_path):
    root = write_fashion_mnist(tmp_path, n_train=200, n_test=10, seed=5)
    clean = fashion_arrays(n_train=200, n_test=10, seed=5).train_labels  # 20 per class
    bundle = build_datasets("fashion_mnist", root, noise_kind="asym", noise_rate=0.4, seed=0)
    noisy = bundle.train.noisy_labels
    counts = np.zeros((10, 10), dtype=np.int64)
    np.add.at(counts, (clean, noisy), 1)
    expected = np.diag(np.full(10, 20))
    for source, target in {0: 6, 6: 0, 2: 4, 4: 2, 5: 7, 7: 9}.items():  # T-shirt<->Shirt, Pullover<->Coat, ...
        expected[source, source], expected[source, target] = 12, 8  # round(0.4 * 20) flipped
    assert np.array_equal(counts, expected)
    assert np.array_equal(asym_class_map("fashion_mnist", 10)[[1, 3, 8, 9]], [1, 3, 8, 9])  # never corrupted


def test_noisy_labels_saved_and_reused(tmp_path, monkeypatch):
    root = write_fashion_mnist(tmp_path, seed=0)
    first = build_datasets("fashion_mnist", root, noise_kind="pairflip", noise_rate=0.3, seed=2)
    path = root / "noisy_labels" / "fashion_mnist_pairflip_0.3_seed2.npy"
    assert first.noise_info["label_file"] == str(path) and not first.noise_info["reused"]
    assert np.array_equal(np.load(path), first.train.noisy_labels)
    edited = first.train.noisy_labels.copy()
    edited[0] = (edited[0] + 1) % 10
    np.save(path, edited)
    monkeypatch.setattr("data_loader.noise.make_noisy_labels", lambda *a, **k: pytest.fail("labels regenerated"))
    again = build_datasets("fashion_mnist", root, noise_kind="pairflip", noise_rate=0.3, seed=2)
    assert again.noise_info["reused"] and np.array_equal(again.train.noisy_labels, edited)


def test_read_only_debian_folder_is_left_untouched_and_its_labels_reused_from_the_cache(tmp_path, monkeypatch):
    data = write_fashion_mnist(tmp_path / "usr" / "share" / "datasets" / "fashion-mnist", seed=0)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    deny_writes_below(monkeypatch, data)
    before = listing(data)
    data.chmod(0o555)
    try:
        first = build_datasets("fashion_mnist", data, noise_kind="sym", noise_rate=0.4, seed=3, val_size=10)
        again = build_datasets("fashion_mnist", data, noise_kind="sym", noise_rate=0.4, seed=3, val_size=10)
    finally:
        data.chmod(0o755)
    assert listing(data) == before
    path = noisy_label_path(label_cache_root(data), "fashion_mnist", "sym", 0.4, 3)
    assert path.is_relative_to(tmp_path / "cache") and first.noise_info["label_file"] == str(path)
    assert not first.noise_info["reused"] and again.noise_info["reused"]
    assert np.array_equal(first.train.noisy_labels, again.train.noisy_labels)
    clean = fashion_arrays(n_train=60, n_test=20, seed=0).train_labels
    assert np.array_equal(np.load(path), make_noisy_labels(clean, "sym", 0.4, num_classes=10, seed=3))


def torchvision_crop_flip(image: torch.Tensor, top: int, left: int, flip: bool, padding: int) -> torch.Tensor:
    out = TF.crop(TF.pad(image, [padding]), top, left, 28, 28)
    return TF.horizontal_flip(out) if flip else out


def test_tensor_loader_equals_the_torchvision_transforms(tmp_path):
    root = write_fashion_mnist(tmp_path, n_train=60, n_test=20, seed=4)
    bundle = build_datasets("fashion_mnist", root, noise_kind="none", noise_rate=0.0, seed=0)
    loader = TensorLoader(bundle.train, "fashion_mnist", batch_size=16, device="cpu")
    assert (loader.size, loader.padding, loader.flip) == (28, 2, True)
    batches = list(loader.epoch(None, shuffle=False, augment=True, generator=torch.Generator().manual_seed(7)))
    assert [b[0].shape for b in batches] == [(16, 1, 28, 28)] * 3 + [(12, 1, 28, 28)]
    params = loader.draw_augmentation(60, torch.Generator().manual_seed(7))
    _, test_transform = get_transforms("fashion_mnist")
    expected = torch.stack([test_transform(torchvision_crop_flip(bundle.train.images[i], top, left, bool(flip), 2))
                            for i, (top, left, flip) in enumerate(params.tolist())])
    assert torch.equal(torch.cat([b[0] for b in batches]), expected)
    assert set(params[:, 0].tolist()) <= set(range(5)) and params[:, 2].any() and not params[:, 2].all()
    plain = torch.cat([b[0] for b in loader.epoch(None, shuffle=False, augment=False)])
    assert torch.equal(plain, torch.stack([test_transform(image) for image in bundle.train.images]))


@pytest.mark.parametrize("arch, dim", [("small_cnn", 128), ("preact_resnet18", 512)])
def test_models_take_one_channel_28x28_images(arch, dim):
    torch.manual_seed(0)
    model = create_model(arch, 10, in_channels=1).eval()
    x = torch.randn(3, 1, 28, 28)
    assert model.forward_features(x).shape == (3, dim) and model(x).shape == (3, 10)


@pytest.mark.skipif(not all((REAL / f"{name}.gz").is_file() for name in FILES), reason=f"no Fashion-MNIST in {REAL}")
def test_real_files_sizes_balance_and_normalisation():
    data = load_fashion_mnist(REAL)
    assert data.train_images.shape == (60000, 1, 28, 28) and data.test_images.shape == (10000, 1, 28, 28)
    assert np.array_equal(np.bincount(data.train_labels), np.full(10, 6000))
    assert np.array_equal(np.bincount(data.test_labels), np.full(10, 1000))
    counts = np.bincount(data.train_images.ravel(), minlength=256)  # exact statistics from the pixel histogram
    values = np.arange(256) / 255
    true_mean = (counts * values).sum() / counts.sum()
    true_std = np.sqrt((counts * (values - true_mean) ** 2).sum() / counts.sum())
    (mean,), (std,) = NORMALIZATION["fashion_mnist"]
    assert mean == pytest.approx(true_mean, abs=1e-4) and std == pytest.approx(true_std, abs=1e-4)
