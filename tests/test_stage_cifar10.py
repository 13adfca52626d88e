"""bench.stage_cifar10: an ImageFolder export plus CIFAR-10N's label file -> the official CIFAR-10 layout, in the
official training order, read back by the project's loaders; every bad input is one line and leaves nothing."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench import stage_cifar10 as stage_mod
from data_loader import build_datasets
from data_loader.cifar import load_cifar
from fine.errors import UserError

PER_CLASS = {"train": 3, "test": 2}


def clean_order() -> np.ndarray:
    """30 training labels, 3 per class, starting with CIFAR-10's first ten."""
    first = np.array(stage_mod.FIRST_LABELS)
    rest = np.repeat(np.arange(10), 3)
    for label in first:
        rest = np.delete(rest, np.flatnonzero(rest == label)[0])
    return np.concatenate([first, np.random.default_rng(0).permutation(rest)])


def write_export(root: Path, classes=stage_mod.CLASSES, per_class=PER_CLASS) -> Path:
    """PNG images (lossless, so the staged pixels can be compared exactly); image k of class c is filled with the
    value 8 * c + k + 1 in its red channel."""
    for split, count in per_class.items():
        for c, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for k in range(count):
                pixels = np.zeros((32, 32, 3), dtype=np.uint8)
                pixels[..., 0] = 8 * c + k + 1
                pixels[..., 1] = 100 if split == "test" else 0
                Image.fromarray(pixels).save(folder / f"{k:04d}.png")
    return root


def write_labels(path: Path, **override) -> dict:
    clean = clean_order()
    rng = np.random.default_rng(1)
    content = {"clean_label": clean}
    for key in stage_mod.HUMAN_KEYS[1:]:
        content[key] = np.where(rng.random(len(clean)) < 0.3, rng.integers(0, 10, len(clean)), clean)
    content.update(override)
    torch.save(content, path)
    return content


@pytest.fixture
def export(tmp_path):
    return write_export(tmp_path / "export"), tmp_path / "human.pt"


def test_stage_rebuilds_the_official_order_and_reads_back(export, tmp_path):
    root, label_file = export
    content = write_labels(label_file)
    out = tmp_path / "data"
    summary = stage_mod.stage(root, label_file, out, per_class=PER_CLASS)
    data = load_cifar("cifar10", out)
    clean = content["clean_label"]
    assert np.array_equal(data.train_labels, clean)
    # the k-th image of class c sits at the k-th occurrence of c in clean_label
    occurrence = np.array([np.sum(clean[:i] == clean[i]) for i in range(len(clean))])
    assert np.array_equal(data.train_images[:, 0, 0, 0], 8 * clean + occurrence + 1)
    assert (data.train_images[:, 1] == 0).all() and (data.test_images[:, 1] == 100).all()
    assert np.array_equal(data.test_labels, np.repeat(np.arange(10), 2))
    assert data.classes == list(stage_mod.CLASSES)
    bundle = build_datasets("cifar10", out, noise_kind="human", noise_rate=0.0, seed=1, noise_label="worst")
    assert np.array_equal(bundle.train.noisy_labels, content["worse_label"])
    assert summary["noise_rate"]["worst"] == pytest.approx((content["worse_label"] != clean).mean())
    assert not list(out.glob(".staging-*"))


def test_existing_data_needs_overwrite(export, tmp_path):
    root, label_file = export
    write_labels(label_file)
    out = tmp_path / "data"
    stage_mod.stage(root, label_file, out, per_class=PER_CLASS)
    with pytest.raises(UserError, match="already staged; pass --overwrite"):
        stage_mod.stage(root, label_file, out, per_class=PER_CLASS)
    stage_mod.stage(root, label_file, out, per_class=PER_CLASS, overwrite=True)


def _remove_one(root: Path) -> None:
    next((root / "train" / "cat").iterdir()).unlink()


def _rename_class(root: Path) -> None:
    (root / "test" / "truck").rename(root / "test" / "lorry")


def _drop_test(root: Path) -> None:
    for folder in (root / "test").iterdir():
        for f in folder.iterdir():
            f.unlink()
        folder.rmdir()
    (root / "test").rmdir()


@pytest.mark.parametrize("damage, message", [
    (_remove_one, r"train/cat holds 2 images, CIFAR-10 has 3 per class in train/; the export is partial"),
    (_rename_class, r"holds the class folders .*lorry.*, not CIFAR-10's"),
    (_drop_test, r"has no test/ folder"),
])
def test_bad_export_is_one_line_and_leaves_nothing(export, tmp_path, damage, message):
    root, label_file = export
    write_labels(label_file)
    damage(root)
    out = tmp_path / "data"
    with pytest.raises(UserError, match=message) as err:
        stage_mod.stage(root, label_file, out, per_class=PER_CLASS)
    assert "\n" not in str(err.value)
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("content, message", [
    ({"clean_label": np.zeros(30, np.int64), "noisy_label": np.zeros(30, np.int64)}, "lacks aggre_label"),
    (None, "does not follow CIFAR-10's training order"),
])
def test_wrong_label_file_is_one_line(export, tmp_path, content, message):
    root, label_file = export
    if content is None:  # CIFAR-10N's keys, but another order
        write_labels(label_file, clean_label=np.roll(clean_order(), 1))
    else:
        torch.save(content, label_file)
    with pytest.raises(UserError, match=message):
        stage_mod.stage(root, label_file, tmp_path / "data", per_class=PER_CLASS)
    with pytest.raises(UserError, match="not found"):
        stage_mod.stage(root, tmp_path / "absent.pt", tmp_path / "data", per_class=PER_CLASS)


def test_interrupted_write_leaves_no_folder(export, tmp_path, monkeypatch):
    root, label_file = export
    write_labels(label_file)

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(stage_mod.torch, "save", fail)
    out = tmp_path / "data"
    with pytest.raises(OSError):
        stage_mod.stage(root, label_file, out, per_class=PER_CLASS)
    assert not any(out.iterdir())


def test_cli_error_exits_2(tmp_path, capsys):
    from fine.errors import run_cli
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: stage_mod.main(["--export", str(tmp_path / "none"), "--cifar_n", str(tmp_path / "x.pt"),
                                        "--out", str(tmp_path / "out")]))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
