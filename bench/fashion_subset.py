"""The Fashion-MNIST that ``bench/gpu_check.sh`` trains on, checked once before any step runs, and for the smoke
check cut down to its own size whatever copy it is given.

    python -m bench.fashion_subset DIR                                   # DIR holds Fashion-MNIST (the files parse)
    python -m bench.fashion_subset DIR --out SMALL --train 200 --test 50 # + a class-balanced subset in SMALL

The subset takes the first ``train // 10`` (``test // 10``) images of each class in the files' order and writes
them, in that order, as the four uncompressed idx files ``--dataset fashion_mnist --data_path SMALL`` reads.
Exit status 2 with one line on stderr when DIR does not hold Fashion-MNIST.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from data_loader.fashion_mnist import (FASHION_MNIST_CLASSES, FASHION_MNIST_FILES, fashion_mnist_folder,
                                      load_fashion_mnist)
from fine.errors import UserError, run_cli


def balanced_head(labels: np.ndarray, size: int) -> np.ndarray:
    """Sorted indices of the first ``size // 10`` samples of each class (fewer where a class has fewer)."""
    per_class = size // len(FASHION_MNIST_CLASSES)
    return np.sort(np.concatenate([np.flatnonzero(labels == k)[:per_class]
                                   for k in range(len(FASHION_MNIST_CLASSES))]))


def write_idx(path: Path, array: np.ndarray) -> None:
    """A uint8 array in the idx format: magic 0x0000080N for N dimensions, big-endian uint32 sizes, the bytes."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fashion_subset", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=str, help="the Fashion-MNIST folder (the four idx files, or FashionMNIST/raw)")
    parser.add_argument("--out", type=str, default=None, help="write a class-balanced subset into this folder")
    parser.add_argument("--train", type=int, default=200, help="training images of the subset (a tenth per class)")
    parser.add_argument("--test", type=int, default=50, help="test images of the subset (a tenth per class)")
    args = parser.parse_args(argv)
    try:
        fashion_mnist_folder(args.data)
    except UserError:
        raise UserError(f"the trainer runs need Fashion-MNIST, and {args.data} does not hold its four "
                        f"*-idx?-ubyte[.gz] files (directly or in FashionMNIST/raw/); pass --fashion-mnist DIR or "
                        f"FASHION_MNIST=DIR, e.g. /usr/share/datasets/fashion-mnist (apt-get install "
                        f"dataset-fashion-mnist)") from None
    data = load_fashion_mnist(args.data)  # a missing or corrupt file: the loader's one line
    if args.out is None:
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for split, images, labels, size in (("train", data.train_images, data.train_labels, args.train),
                                        ("test", data.test_images, data.test_labels, args.test)):
        keep = balanced_head(labels, size)
        image_name, label_name = FASHION_MNIST_FILES[split]
        write_idx(out / image_name, images[keep, 0])
        write_idx(out / label_name, labels[keep])
    print(f"Fashion-MNIST subset of {args.data}: {len(balanced_head(data.train_labels, args.train))} training and "
          f"{len(balanced_head(data.test_labels, args.test))} test images in {out}")


if __name__ == "__main__":
    run_cli(main)
