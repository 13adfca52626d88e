"""Mini-WebVision loader on a tiny copy in the real layout: class filtering, label alignment, the ImageNet test set."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from data_loader.webvision import load_webvision, webvision_transforms
from fine.errors import UserError

TO_TENSOR = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])
TRAIN_LABELS = [0, 49, 50, 3, 999, 7, 51, 3, 0, 12]
VAL_LABELS = [5, 60, 49, 0, 50, 2]


def jpeg(path: Path, label: int) -> None:
    """A solid 8x8 JPEG whose red value encodes ``label`` (labels >= 50 share a colour; they must never be read)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (4 * min(label, 50) + 20, 90, 30)).save(path, quality=95)


def read_label(image: torch.Tensor) -> int:
    return round((float(image[0].mean()) * 255 - 20) / 4)


def wnid(c: int) -> str:
    return f"n{1440764 + 37 * c:08d}"


def write_webvision(root: Path) -> Path:
    """``root/webvision`` (info files, google/ and val_images_256/ images) and ``root/imagenet/val/<wnid>/`` folders
    for the first 51 of 60 synsets (two images for class c < 51, named so that listing order is not creation order).
    Returns the WebVision root."""
    web = root / "webvision"
    (web / "info").mkdir(parents=True)
    train = [(f"google/q{y:04d}/{i:03d}.jpg", y) for i, y in enumerate(TRAIN_LABELS)]
    val = [(f"ILSVRC_val_{i:04d}.jpg", y) for i, y in enumerate(VAL_LABELS)]
    for rel, y in train:
        jpeg(web / rel, y)
    for name, y in val:
        jpeg(web / "val_images_256" / name, y)
    (web / "info" / "train_filelist_google.txt").write_text("".join(f"{r} {y}\n" for r, y in train))
    (web / "info" / "val_filelist.txt").write_text("".join(f"{n} {y}\n" for n, y in val))
    (web / "info" / "synsets.txt").write_text("".join(f"{wnid(c)} class {c}, a name\n" for c in range(60)))
    for c in range(51):
        for name in ("b.JPEG", "a.JPEG"):
            jpeg(root / "imagenet" / "val" / wnid(c) / name, c)
    return web


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("webvision")
    write_webvision(root)
    return root


def test_first_50_classes_and_label_alignment(data):
    train, test_web, test_imagenet, num_classes = load_webvision(
        data / "webvision", train_transform=TO_TENSOR, test_transform=TO_TENSOR)
    assert num_classes == 50 and test_imagenet is None
    keep = [i for i, y in enumerate(TRAIN_LABELS) if y < 50]
    assert train.paths == [str(data / "webvision" / f"google/q{TRAIN_LABELS[i]:04d}/{i:03d}.jpg") for i in keep]
    np.testing.assert_array_equal(train.noisy_labels, [TRAIN_LABELS[i] for i in keep])
    assert train.clean_labels is None
    keep_val = [i for i, y in enumerate(VAL_LABELS) if y < 50]
    assert test_web.paths == [str(data / "webvision" / "val_images_256" / f"ILSVRC_val_{i:04d}.jpg") for i in keep_val]
    np.testing.assert_array_equal(test_web.noisy_labels, [VAL_LABELS[i] for i in keep_val])
    np.testing.assert_array_equal(test_web.clean_labels, test_web.noisy_labels)
    for dataset in (train, test_web):
        for i in range(len(dataset)):
            image, label, index = dataset[i]
            assert index == i and read_label(image) == label


def test_num_classes_filter(data):
    train, test_web, _, num_classes = load_webvision(data / "webvision", num_classes=10)
    assert num_classes == 10
    assert train.noisy_labels.tolist() == [0, 3, 7, 3, 0] and test_web.noisy_labels.tolist() == [5, 0, 2]
    with pytest.raises(UserError, match="must be in 1..1000"):
        load_webvision(data / "webvision", num_classes=0)


@pytest.mark.parametrize("nested", [True, False])
def test_imagenet_val_follows_synsets(data, nested):
    imagenet_root = data / "imagenet" if nested else data / "imagenet" / "val"
    _, _, test_imagenet, _ = load_webvision(data / "webvision", imagenet_root, test_transform=TO_TENSOR)
    base = data / "imagenet" / "val"
    assert test_imagenet.paths == [str(base / wnid(c) / n) for c in range(50) for n in ("a.JPEG", "b.JPEG")]
    np.testing.assert_array_equal(test_imagenet.noisy_labels, np.repeat(np.arange(50), 2))
    np.testing.assert_array_equal(test_imagenet.clean_labels, test_imagenet.noisy_labels)
    for i in (0, 27, 99):
        image, label, _ = test_imagenet[i]
        assert read_label(image) == label


def test_transforms(data):
    train_tf, test_tf = webvision_transforms()
    train, test_web, _, _ = load_webvision(data / "webvision", train_transform=train_tf, test_transform=test_tf)
    image = train[0][0]
    assert image.shape == (3, 299, 299) and image.dtype == torch.float32
    assert float(image[0].mean()) == pytest.approx(((4 * 0 + 20) / 255 - 0.485) / 0.229, abs=0.05)
    assert test_web[0][0].shape == (3, 299, 299)


def test_missing_paths(tmp_path):
    source = "download WebVision 1.0 .* from https://data.vision.ee.ethz.ch/cvl/webvision/"
    with pytest.raises(UserError, match=rf"missing folder .*nowhere; {source}"):
        load_webvision(tmp_path / "nowhere")
    for i, path in enumerate(("info/train_filelist_google.txt", "info/val_filelist.txt", "val_images_256",
                              "info/synsets.txt")):
        web = write_webvision(tmp_path / str(i))
        target = web / path
        if target.is_dir():
            for file in target.iterdir():
                file.unlink()
            target.rmdir()
        else:
            target.unlink()
        kind = "folder " if path == "val_images_256" else ""
        with pytest.raises(UserError, match=rf"missing {kind}{target}; {source}"):
            load_webvision(web, tmp_path / str(i) / "imagenet")
    web = write_webvision(tmp_path / "imagenet")
    imagenet_source = "download the ILSVRC2012 validation images from https://image-net.org"
    with pytest.raises(UserError, match=rf"missing folder .*elsewhere; {imagenet_source}"):
        load_webvision(web, tmp_path / "elsewhere")
    with pytest.raises(UserError, match=rf"missing folder .*{wnid(51)}; {imagenet_source}"):
        load_webvision(web, tmp_path / "imagenet" / "imagenet", num_classes=52)
    (web / "info" / "synsets.txt").write_text("n01440764\n")
    with pytest.raises(UserError, match="lists 1 classes, fewer than the 50 requested"):
        load_webvision(web, tmp_path / "imagenet" / "imagenet")
