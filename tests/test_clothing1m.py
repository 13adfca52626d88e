"""Clothing1M loader on a tiny copy in the real layout, its transforms, and the class-balanced epoch sampler."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from data_loader.clothing1m import clothing1m_transforms, load_clothing1m
from data_loader.image_files import ImageFileDataset
from data_loader.sampling import balanced_epoch_indices, balanced_subset
from fine.errors import UserError

TO_TENSOR = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])
ANNOTATIONS = ("noisy_label_kv.txt", "clean_label_kv.txt", "noisy_train_key_list.txt", "clean_val_key_list.txt",
               "clean_test_key_list.txt")


def shade(label: int) -> int:
    """The red value of a fixture image whose split should read ``label``."""
    return 10 + 17 * label


def read_label(image: torch.Tensor) -> int:
    """Invert :func:`shade` on a float (3, H, W) image in [0, 1]."""
    return round((float(image[0].mean()) * 255 - 10) / 17)


def write_clothing1m(root: Path, *, nested: bool = True) -> dict:
    """Write 30 8x8 JPEGs and the five annotation files; return what each split should hold.

    Keys 0..29 have noisy labels ``i % 14``; keys 15..29 also have clean labels ``(5 i + 3) % 14`` (15..19 belong to
    the noisy training set too, so train must read the noisy kv). Train lists keys 0..19 in a shuffled order, val
    20..24, test 25..29. Each image is a solid colour encoding the label its split should report.
    """
    keys = [f"images/{i % 3}/{i:02d}/img_{i}.jpg" for i in range(30)]
    noisy = {k: i % 14 for i, k in enumerate(keys)}
    clean = {k: (5 * i + 3) % 14 for i, k in enumerate(keys) if i >= 15}
    train = [keys[i] for i in np.random.default_rng(0).permutation(20)]
    val, test = keys[20:25], keys[25:30]
    for k in keys:
        label = noisy[k] if k in train else clean[k]
        (root / k).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), (shade(label), 128, 64)).save(root / k, quality=95)
    ann = root / "annotations" if nested else root
    ann.mkdir(parents=True, exist_ok=True)
    (ann / "noisy_label_kv.txt").write_text("".join(f"{k} {v}\n" for k, v in noisy.items()))
    (ann / "clean_label_kv.txt").write_text("".join(f"{k} {v}\n" for k, v in reversed(clean.items())))
    for name, split in (("noisy_train_key_list.txt", train), ("clean_val_key_list.txt", val),
                        ("clean_test_key_list.txt", test)):
        (ann / name).write_text("".join(f"{k}\n" for k in split))
    return {"train": [(k, noisy[k]) for k in train], "val": [(k, clean[k]) for k in val],
            "test": [(k, clean[k]) for k in test], "annotations": ann}


@pytest.mark.parametrize("nested", [True, False])
def test_splits_paths_and_labels(tmp_path, nested):
    expected = write_clothing1m(tmp_path, nested=nested)
    train, val, test, num_classes = load_clothing1m(tmp_path, train_transform=TO_TENSOR, test_transform=TO_TENSOR)
    assert num_classes == 14
    for dataset, split in ((train, "train"), (val, "val"), (test, "test")):
        assert isinstance(dataset, ImageFileDataset)
        assert dataset.paths == [str(tmp_path / k) for k, _ in expected[split]]
        assert dataset.noisy_labels.dtype == np.int64
        np.testing.assert_array_equal(dataset.noisy_labels, [v for _, v in expected[split]])
        np.testing.assert_array_equal(dataset.targets, dataset.noisy_labels)
        for i in range(len(dataset)):
            image, label, index = dataset[i]
            assert index == i and label == dataset.noisy_labels[i] and read_label(image) == label
    assert train.clean_labels is None
    np.testing.assert_array_equal(val.clean_labels, val.noisy_labels)
    np.testing.assert_array_equal(test.clean_labels, test.noisy_labels)


def test_transforms_and_view(tmp_path):
    write_clothing1m(tmp_path)
    train_tf, test_tf = clothing1m_transforms()
    train, _, test, _ = load_clothing1m(tmp_path, train_transform=train_tf, test_transform=test_tf)
    image, _, _ = train[0]
    assert image.shape == (3, 224, 224) and image.dtype == torch.float32
    red = (shade(int(train.noisy_labels[0])) / 255 - 0.6959) / 0.3113
    assert float(image[0].mean()) == pytest.approx(red, abs=0.05)
    assert test[0][0].shape == (3, 224, 224)
    plain = train.view(TO_TENSOR)
    assert plain.noisy_labels is train.noisy_labels and train.transform is train_tf
    assert plain[0][0].shape == (3, 8, 8)
    part = train.subset(np.array([3, 1]))
    assert part.paths == [train.paths[3], train.paths[1]] and part.clean_labels is None


def test_missing_paths_name_the_file_and_the_source(tmp_path):
    with pytest.raises(UserError, match=r"missing folder .*nowhere; Clothing1M must be requested from its authors"):
        load_clothing1m(tmp_path / "nowhere")
    with pytest.raises(UserError, match=r"missing folder .*images; Clothing1M must be requested"):
        load_clothing1m(tmp_path)
    for name in ANNOTATIONS:
        root = tmp_path / name.split(".")[0]
        ann = write_clothing1m(root)["annotations"]
        (ann / name).unlink()
        with pytest.raises(UserError, match=rf"missing {ann / name}; Clothing1M must be requested from its authors "
                                            r"\(Xiao et al. 2015"):
            load_clothing1m(root)


def test_bad_annotation_contents(tmp_path):
    ann = write_clothing1m(tmp_path)["annotations"]
    with open(ann / "clean_test_key_list.txt", "a") as f:
        f.write("images/9/99/unknown.jpg\n")
    with pytest.raises(UserError, match=r"lists images/9/99/unknown.jpg, which has no label in .*clean_label_kv"):
        load_clothing1m(tmp_path)
    with open(ann / "clean_label_kv.txt", "a") as f:
        f.write("images/9/99/unknown.jpg 14\n")
    with pytest.raises(UserError, match="labels outside 0..13"):
        load_clothing1m(tmp_path)
    (ann / "noisy_label_kv.txt").write_text("images/0/00/img_0.jpg\n")
    with pytest.raises(UserError, match="malformed"):
        load_clothing1m(tmp_path)


def test_balanced_sampler_counts_and_randomness():
    gen = torch.Generator().manual_seed(0)
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 3 + [3] * 17)
    idx = balanced_epoch_indices(labels, None, 40, 4, gen)
    assert idx.dtype == torch.long and idx.shape == (40,)
    np.testing.assert_array_equal(torch.bincount(labels[idx], minlength=4), [10, 10, 10, 10])
    for c in (0, 1, 3):  # enough samples: drawn without replacement
        assert len(set(idx[labels[idx] == c].tolist())) == 10
    assert set(idx[labels[idx] == 2].tolist()) <= {80, 81, 82}  # 3 samples for 10 draws: with replacement
    assert not torch.equal(idx[:10].sort().values, idx[:10])  # shuffled across classes, not grouped
    again = balanced_epoch_indices(labels, None, 40, 4, torch.Generator().manual_seed(0))
    torch.testing.assert_close(idx, again)
    other = balanced_epoch_indices(labels, None, 40, 4, torch.Generator().manual_seed(1))
    assert not torch.equal(idx, other)


def test_balanced_sampler_candidates_and_redistribution():
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(200) % 5
    candidates = torch.tensor([0, 5, 10, 1, 6, 11, 16, 21, 3, 8])  # classes 0, 1 and 3 only
    idx = balanced_epoch_indices(labels, candidates, 31, 5, gen)
    assert set(idx.tolist()) <= set(candidates.tolist())
    counts = torch.bincount(labels[idx], minlength=5)
    assert counts[[2, 4]].tolist() == [0, 0] and sorted(counts[[0, 1, 3]].tolist()) == [10, 10, 11]
    sub = balanced_epoch_indices(labels, candidates, 6, 5, gen)
    assert torch.bincount(labels[sub], minlength=5).tolist() == [2, 2, 0, 2, 0]
    assert len(set(sub.tolist())) == 6
    assert balanced_epoch_indices(labels, candidates, 0, 5, gen).shape == (0,)
    with pytest.raises(ValueError, match="empty candidate set"):
        balanced_epoch_indices(labels, torch.empty(0, dtype=torch.long), 4, 5, gen)
    with pytest.raises(ValueError, match="0..4"):
        balanced_epoch_indices(labels + 1, None, 4, 5, gen)


def test_balanced_subset_is_distinct_sorted_and_balanced():
    labels = torch.tensor([0] * 30 + [1] * 30 + [2] * 3)  # class 2 is short of its share
    subset = balanced_subset(labels, 30, 3, torch.Generator().manual_seed(0))
    assert torch.equal(subset, subset.unique())  # sorted, no repeats
    assert torch.bincount(labels[subset], minlength=3).tolist() == [10, 10, 3]  # all of class 2, once each
    assert not torch.equal(subset, balanced_subset(labels, 30, 3, torch.Generator().manual_seed(1)))


def test_balanced_sampler_at_clothing1m_scale():
    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(14, (1_000_000,), generator=gen)
    idx = balanced_epoch_indices(labels, None, 64 * 2000, 14, gen)
    counts = torch.bincount(labels[idx], minlength=14)
    assert counts.sum() == 128_000 and counts.max() - counts.min() <= 1
    assert len(torch.unique(idx)) == 128_000
