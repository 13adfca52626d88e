"""Loaders: CIFAR pickle fixtures read through the real code, digits split, validation split, transforms, errors."""
import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader

from data_loader import (
    NORMALIZATION,
    NoisyDataset,
    balanced_split,
    build_datasets,
    get_transforms,
    load_cifar,
    load_digits_split,
    make_noisy_labels,
)
from data_loader.transforms import AUGMENTATION
from fine.errors import UserError
from tests.fixtures import cifar_arrays, write_cifar10, write_cifar100


def test_cifar10_fixture_loads_in_the_written_order(tmp_path):
    root = write_cifar10(tmp_path, n_train=103, n_test=17, seed=4)
    assert sorted(p.name for p in (root / "cifar-10-batches-py").iterdir()) == [
        "batches.meta", "data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]
    expected = cifar_arrays(10, n_train=103, n_test=17, seed=4)
    data = load_cifar("cifar10", root)
    assert data.train_images.shape == (103, 3, 32, 32) and data.train_images.dtype == np.uint8
    assert data.train_labels.dtype == np.int64 and data.classes[9] == "truck"
    assert np.array_equal(data.train_images.reshape(103, -1), expected.train_data)
    assert np.array_equal(data.train_labels, expected.train_labels)
    assert np.array_equal(data.test_labels, expected.test_labels)
    # CHW: the first 1024 bytes of a row are the red plane, row-major.
    assert data.train_images[5, 0, 1, 2] == expected.train_data[5, 32 + 2]
    assert data.train_images[5, 2, 31, 31] == expected.train_data[5, 3071]


def test_build_cifar10_bundle_shapes_labels_and_clean_test_set(tmp_path):
    root = write_cifar10(tmp_path, n_train=100, n_test=20, seed=0)
    expected = cifar_arrays(10, n_train=100, n_test=20, seed=0)
    bundle = build_datasets("cifar10", root, noise_kind="sym", noise_rate=0.5, seed=1)
    assert bundle.num_classes == 10 and bundle.val is None
    train, test = bundle.train, bundle.test
    assert len(train) == 100 and len(test) == 20
    assert np.array_equal(train.clean_labels, expected.train_labels)
    assert np.array_equal(train.noisy_labels, make_noisy_labels(expected.train_labels, "sym", 0.5, num_classes=10,
                                                                seed=1))
    assert np.array_equal(test.noisy_labels, expected.test_labels)
    assert np.array_equal(test.clean_labels, expected.test_labels)
    assert bundle.noise_info["label_file"] == str(root / "noisy_labels" / "cifar10_sym_0.5_seed1.npy")
    assert bundle.noise_info["noise_rate"] == pytest.approx((train.noisy_labels != train.clean_labels).mean())

    x, y, i = test[3]
    mean, std = (torch.tensor(v).view(3, 1, 1) for v in NORMALIZATION["cifar10"])
    raw = torch.from_numpy(expected.test_data[3].reshape(3, 32, 32)).float() / 255
    assert x.dtype == torch.float32 and torch.allclose(x, (raw - mean) / std, atol=1e-5)
    assert (y, i) == (int(expected.test_labels[3]), 3)
    xb, yb, ib = next(iter(DataLoader(train, batch_size=8, shuffle=False)))
    assert xb.shape == (8, 3, 32, 32) and xb.dtype == torch.float32
    assert yb.tolist() == train.noisy_labels[:8].tolist() and ib.tolist() == list(range(8))


def test_cifar100_fixture_loads_fine_labels(tmp_path):
    root = write_cifar100(tmp_path, n_train=300, n_test=100, seed=2)
    expected = cifar_arrays(100, n_train=300, n_test=100, seed=2)
    bundle = build_datasets("cifar100", root, noise_kind="asym", noise_rate=0.4, seed=0, val_size=100)
    assert bundle.num_classes == 100
    assert len(bundle.train) == 200 and len(bundle.val) == 100 and len(bundle.test) == 100
    assert np.array_equal(bundle.test.clean_labels, expected.test_labels)
    assert np.array_equal(np.bincount(bundle.val.clean_labels, minlength=100), np.ones(100))
    data = load_cifar("cifar100", root)
    assert data.train_images.shape == (300, 3, 32, 32) and len(data.classes) == 100
    assert np.array_equal(data.train_labels, expected.train_labels)
    assert np.array_equal(data.train_images.reshape(300, -1), expected.train_data)


def test_digits_split_is_stratified_fixed_and_uint8():
    a, b = load_digits_split(), load_digits_split()
    assert a.train_images.shape == (1437, 1, 8, 8) and a.test_images.shape == (360, 1, 8, 8)
    assert a.train_images.dtype == np.uint8 and a.train_images.max() == 255
    assert np.array_equal(a.train_images, b.train_images) and np.array_equal(a.test_labels, b.test_labels)
    counts = np.bincount(np.concatenate([a.train_labels, a.test_labels]))
    assert np.abs(np.bincount(a.test_labels) - counts * 360 / 1797).max() < 1
    # Train and test partition the data set: together they are its 1,797 (image, label) pairs, pixels scaled to 0..255.
    raw = load_digits()
    reference = sorted(zip((np.rint(raw.images * 255 / 16).astype(np.uint8)).reshape(1797, -1).tolist(),
                           raw.target.tolist()))
    ours = sorted(zip(np.concatenate([a.train_images, a.test_images]).reshape(1797, -1).tolist(),
                      np.concatenate([a.train_labels, a.test_labels]).tolist()))
    assert ours == reference


def test_digits_normalisation_constants_match_the_training_split():
    x = load_digits_split().train_images.astype(np.float64) / 255
    (mean,), (std,) = NORMALIZATION["digits"]
    assert mean == pytest.approx(x.mean(), abs=1e-4) and std == pytest.approx(x.std(), abs=1e-4)


def test_digits_bundle_run_seed_does_not_move_the_test_set(tmp_path):
    one = build_datasets("digits", tmp_path, noise_kind="pairflip", noise_rate=0.3, seed=1)
    two = build_datasets("digits", tmp_path, noise_kind="pairflip", noise_rate=0.3, seed=2)
    assert torch.equal(one.test.images, two.test.images)
    assert not np.array_equal(one.train.noisy_labels, two.train.noisy_labels)
    assert (tmp_path / "noisy_labels" / "digits_pairflip_0.3_seed1.npy").is_file()
    x, y, i = one.train[0]
    assert x.shape == (1, 8, 8) and x.dtype == torch.float32


def test_validation_split_balanced_deterministic_disjoint_and_noisy(tmp_path):
    kw = dict(noise_kind="sym", noise_rate=0.6, seed=3, val_size=200)
    bundle = build_datasets("digits", tmp_path, **kw)
    again = build_datasets("digits", tmp_path, **kw)
    full = build_datasets("digits", tmp_path, noise_kind="sym", noise_rate=0.6, seed=3)
    train, val = bundle.train, bundle.val
    assert len(train) == 1237 and len(val) == 200
    assert np.array_equal(np.bincount(val.clean_labels), np.full(10, 20))
    assert torch.equal(val.images, again.val.images) and np.array_equal(val.noisy_labels, again.val.noisy_labels)
    # Map every sample back to its position in the full training set (digits has a few duplicate images, so match on
    # image and both labels together).
    key = {(x.tobytes(), int(n), int(c)): j for j, (x, n, c) in
           enumerate(zip(full.train.images.numpy(), full.train.noisy_labels, full.train.clean_labels))}
    t_pos = [key[(x.tobytes(), int(n), int(c))] for x, n, c in
             zip(train.images.numpy(), train.noisy_labels, train.clean_labels)]
    v_pos = [key[(x.tobytes(), int(n), int(c))] for x, n, c in zip(val.images.numpy(), val.noisy_labels,
                                                                     val.clean_labels)]
    assert sorted(t_pos + v_pos) == list(range(1437))  # disjoint, covering, order kept
    assert t_pos == sorted(t_pos) and v_pos == sorted(v_pos)
    assert (val.noisy_labels != val.clean_labels).mean() > 0.3  # validation labels stay noisy
    # Re-indexed from 0; validation uses the un-augmented test transform; the train view shares arrays.
    assert [val[k][2] for k in range(3)] == [0, 1, 2] and train[len(train) - 1][2] == len(train) - 1
    assert val.transform is bundle.test_transform and train.transform is bundle.train_transform
    plain = train.view(bundle.test_transform)
    assert plain.images is train.images and plain.noisy_labels is train.noisy_labels
    assert np.array_equal(plain.targets, train.noisy_labels) and train.transform is bundle.train_transform
    assert bundle.noise_info["num_train"] == 1237 and bundle.noise_info["num_val"] == 200


def test_balanced_split_against_reference():
    labels = np.repeat(np.arange(4), [5, 6, 7, 8])
    train_idx, val_idx = balanced_split(labels, 8, 4, seed=0)
    assert np.array_equal(np.bincount(labels[val_idx]), [2, 2, 2, 2])
    assert np.array_equal(np.union1d(train_idx, val_idx), np.arange(26)) and not np.intersect1d(train_idx, val_idx).size
    other = balanced_split(labels, 8, 4, seed=1)[1]
    assert not np.array_equal(val_idx, other)


def test_noisy_dataset_item_and_transform_contract():
    images = torch.arange(2 * 3 * 2 * 2, dtype=torch.uint8).view(2, 3, 2, 2)
    ds = NoisyDataset(images, np.array([1, 0]), None, transform=lambda x: x.float() * 2)
    x, y, i = ds[1]
    assert torch.equal(x, images[1].float() * 2) and (y, i) == (0, 1) and ds.clean_labels is None
    raw, _, _ = ds.view(None)[1]
    assert raw.dtype == torch.uint8 and torch.equal(raw, images[1])
    sub = ds.subset(np.array([1]))
    assert len(sub) == 1 and sub[0][1:] == (0, 0) and torch.equal(sub.images[0], images[1])


@pytest.mark.parametrize("dataset", tuple(NORMALIZATION))  # datasets with fixed transforms
def test_transforms_train_augments_test_is_deterministic(dataset):
    train_t, test_t = get_transforms(dataset)
    channels, size = len(NORMALIZATION[dataset][0]), AUGMENTATION[dataset][0]
    x = torch.randint(0, 256, (channels, size, size), dtype=torch.uint8)
    mean, std = (torch.tensor(v).view(-1, 1, 1) for v in NORMALIZATION[dataset])
    assert torch.allclose(test_t(x), (x.float() / 255 - mean) / std, atol=1e-5)
    torch.manual_seed(0)
    outs = [train_t(x) for _ in range(8)]
    assert all(o.shape == (channels, size, size) and o.dtype == torch.float32 for o in outs)
    assert any(not torch.equal(o, outs[0]) for o in outs)


def test_digits_train_transform_never_mirrors():
    train_t, _ = get_transforms("digits")
    x = torch.zeros(1, 8, 8, dtype=torch.uint8)
    x[0, 2:6, 1] = 255  # a vertical stroke in column 1: crops move it to columns 0..2, a mirror to 5..7
    torch.manual_seed(0)
    cols = {int(train_t(x)[0].max(0).values.argmax()) for _ in range(50)}
    assert cols == {0, 1, 2}


def test_missing_cifar_directory_names_the_path_and_the_download_command(tmp_path):
    with pytest.raises(UserError) as err:
        build_datasets("cifar10", tmp_path, noise_kind="sym", noise_rate=0.2, seed=0)
    msg = str(err.value)
    assert str(tmp_path / "cifar-10-batches-py") in msg and f"bash scripts/download_cifar.sh {tmp_path}" in msg
    with pytest.raises(UserError, match="cifar-100-python"):
        load_cifar("cifar100", tmp_path)


def test_missing_and_corrupt_cifar_files_are_named(tmp_path):
    root = write_cifar10(tmp_path, n_train=20, n_test=5)
    batch = root / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:200])
    with pytest.raises(UserError, match=f"CIFAR file {batch} is corrupt .*re-download it with: bash "
                                        f"scripts/download_cifar.sh"):
        load_cifar("cifar10", root)
    batch.unlink()
    with pytest.raises(UserError, match=f"CIFAR file {batch} is missing"):
        load_cifar("cifar10", root)
    root100 = write_cifar100(tmp_path / "c100", n_train=100, n_test=10)
    (root100 / "cifar-100-python" / "test").write_bytes(b"\x80\x02garbage")
    with pytest.raises(UserError, match="test is corrupt"):
        load_cifar("cifar100", root100)


@pytest.mark.parametrize("val_size,message", [
    (-10, r"--val_size -10 must be in \[0, 1437\)"),
    (1437, r"--val_size 1437 must be in \[0, 1437\)"),
    (105, "--val_size 105 is not a multiple of the 10 classes, which a class-balanced split needs; "
          "use e.g. 100 or 110"),
    (1420, "--val_size 1420 takes 142 samples per class but class 8 has only 139 training samples"),
])
def test_bad_val_size_is_explained(tmp_path, val_size, message):
    with pytest.raises(UserError, match=message) as err:
        build_datasets("digits", tmp_path, noise_kind="none", noise_rate=0.0, seed=0, val_size=val_size)
    assert "\n" not in str(err.value)


def test_unknown_dataset_is_refused(tmp_path):
    with pytest.raises(UserError, match="unknown dataset 'mnist'; use one of cifar10, cifar100, digits"):
        build_datasets("mnist", tmp_path, noise_kind="sym", noise_rate=0.2, seed=0)
