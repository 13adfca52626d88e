"""Feature cells for the peers benchmark (``bench.peers``): frozen embeddings and the noisy labels put on them.

    python -m bench.embeddings --dataset cifar10 --data_path /work/data/cifar10 --out /work/data/embeddings
    python -m bench.embeddings --dataset fashion_mnist --data_path /usr/share/datasets/fashion-mnist --out ...

An *embedding file* ``<out>/<dataset>.npz`` holds the features of every training image by a **frozen encoder trained
with clean labels on the test images** (disjoint from the images whose labels are examined): ``features`` (N, D)
float32, ``labels`` (N,) int64 clean labels, ``encoder_accuracy`` (the encoder's accuracy on those training images)
and, for CIFAR-10 with the CIFAR-10N file present, ``human_<name>`` (N,) for aggre, random1 and worst. digits has no
encoder: its features are the raw pixels (0..16) (scikit-learn's 1,797 images).

A *cell* (:func:`make_cell`) draws from an embedding file a fixed class-balanced test set (seed 0), then a
class-balanced detection set of ``size`` samples from the rest (the cell's seed), and puts noisy labels on the
detection set: synthetic (``data_loader.noise.make_noisy_labels``, same seed) or CIFAR-10N's human labels.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from data_loader.noise import make_noisy_labels
from fine.errors import run_cli

HUMAN = {"aggre": "aggre_label", "random1": "random_label1", "worst": "worse_label"}
ENCODER_DATASETS = ("cifar10", "fashion_mnist")


@dataclass
class Cell:
    """One benchmark cell: detection set (features, noisy and clean labels) and a clean test set."""

    name: str
    features: np.ndarray  # (n, D) float32
    noisy: np.ndarray  # (n,) int64
    clean: np.ndarray  # (n,) int64
    test_features: np.ndarray  # (m, D) float32
    test_labels: np.ndarray  # (m,) int64
    num_classes: int
    seed: int

    @property
    def is_clean(self) -> np.ndarray:
        return self.noisy == self.clean


class Encoder(nn.Module):
    """Four 3x3 conv-BN-ReLU stages (32, 64, 128, 256 channels), 2x2 max-pool after the first three, global average
    pool: (B, C, H, W) -> (B, 256) features, a linear head on top. About 390k parameters; ~15M MACs per 32x32 image."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i, (cin, cout) in enumerate(zip((in_channels, 32, 64, 128), (32, 64, 128, 256))):
            layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
            if i < 3:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(256, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and random crop with 4-pixel zero padding, per image, on a (B, C, H, W) batch."""
    b, _, h, w = x.shape
    flip = torch.rand(b, generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    padded = nn.functional.pad(x, (4, 4, 4, 4))
    dy, dx = torch.randint(0, 9, (2, b), generator=gen)
    rows = (dy[:, None] + torch.arange(h))[:, None, :, None].expand(b, x.shape[1], h, w + 8)
    x = padded.gather(2, rows)
    cols = (dx[:, None] + torch.arange(w))[:, None, None, :].expand(b, x.shape[1], h, w)
    return x.gather(3, cols)


def train_encoder(images: np.ndarray, labels: np.ndarray, num_classes: int, *, epochs: int, seed: int = 0,
                  batch_size: int = 128, lr: float = 0.05) -> tuple[Encoder, torch.Tensor, torch.Tensor]:
    """Train :class:`Encoder` on (N, C, H, W) uint8 images with clean labels (SGD, one-cycle cosine schedule).

    Returns the encoder (eval mode) and the per-channel mean and std used to normalise its inputs.
    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(images).float() / 255
    mean, std = x.mean((0, 2, 3), keepdim=True), x.std((0, 2, 3), keepdim=True)
    x = (x - mean) / std
    y = torch.from_numpy(labels).long()
    model = Encoder(x.shape[1], num_classes)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    steps = epochs * (len(x) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.2)
    model.train()
    for epoch in range(epochs):
        start, correct = time.time(), 0
        order = torch.randperm(len(x), generator=gen)
        for i in range(len(x) // batch_size):
            idx = order[i * batch_size:(i + 1) * batch_size]
            logits = model(_augment(x[idx], gen))
            loss = nn.functional.cross_entropy(logits, y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            correct += int((logits.argmax(1) == y[idx]).sum())
        print(f"encoder epoch {epoch + 1}/{epochs}: train accuracy {correct / (len(x) // batch_size * batch_size):.3f}"
              f" ({time.time() - start:.0f} s)", flush=True)
    return model.eval(), mean, std


@torch.no_grad()
def embed(model: Encoder, images: np.ndarray, mean: torch.Tensor, std: torch.Tensor,
          batch_size: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """(N, 256) float32 features and (N,) predicted classes of (N, C, H, W) uint8 images."""
    feats, preds = [], []
    for start in range(0, len(images), batch_size):
        x = (torch.from_numpy(images[start:start + batch_size]).float() / 255 - mean) / std
        f = model.features(x)
        feats.append(f.numpy())
        preds.append(model.head(f).argmax(1).numpy())
    return np.concatenate(feats).astype(np.float32), np.concatenate(preds)


def build_embeddings(dataset: str, data_path: str | None, out: Path, epochs: int) -> Path:
    """Write ``<out>/<dataset>.npz`` (see the module docstring) and return its path."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{dataset}.npz"
    if dataset == "digits":
        from sklearn.datasets import load_digits
        raw = load_digits()
        x = raw.data.astype(np.float32)  # raw pixel values 0..16
        np.savez(path, features=x, labels=raw.target.astype(np.int64), encoder_accuracy=np.float32(np.nan))
        return path
    extra = {}
    if dataset == "cifar10":
        from data_loader.cifar import load_cifar
        data = load_cifar("cifar10", data_path)
        human = Path(data_path) / "cifar-n" / "CIFAR-10_human.pt"
        if human.is_file():
            table = torch.load(human, weights_only=False)
            if not np.array_equal(np.asarray(table["clean_label"]), data.train_labels):
                raise ValueError(f"{human}: clean_label differs from the CIFAR-10 training labels")
            extra = {f"human_{k}": np.asarray(table[v]).astype(np.int64) for k, v in HUMAN.items()}
    else:
        from data_loader.fashion_mnist import load_fashion_mnist
        data = load_fashion_mnist(data_path)
    model, mean, std = train_encoder(data.test_images, data.test_labels, 10, epochs=epochs)
    feats, preds = embed(model, data.train_images, mean, std)
    accuracy = float((preds == data.train_labels).mean())
    print(f"{dataset}: encoder accuracy on the {len(preds)} training images {accuracy:.3f}")
    np.savez(path, features=feats, labels=data.train_labels.astype(np.int64), encoder_accuracy=np.float32(accuracy),
             **extra)
    return path


def _balanced(labels: np.ndarray, pool: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` indices of ``pool``, as equal per class as the pool allows (sorted)."""
    classes = np.unique(labels[pool])
    per = np.full(len(classes), size // len(classes))
    per[:size - per.sum()] += 1
    chosen = [rng.permutation(pool[labels[pool] == c])[:k] for c, k in zip(classes, per)]
    return np.sort(np.concatenate(chosen))


def make_cell(emb: dict, dataset: str, noise: str, seed: int, *, size: int, test_size: int) -> Cell:
    """A cell of ``emb`` (an embedding file's arrays): ``noise`` is ``kind:rate`` (sym, asym, pairflip) or
    ``human:<aggre|random1|worst>``."""
    labels = emb["labels"]
    everything = np.arange(len(labels))
    test = _balanced(labels, everything, test_size, np.random.default_rng(0))
    rest = np.setdiff1d(everything, test)
    subset = _balanced(labels, rest, min(size, len(rest)), np.random.default_rng(seed))
    clean = labels[subset]
    kind, value = noise.split(":")
    if kind == "human":
        noisy = emb[f"human_{value}"][subset]
    else:
        noisy = make_noisy_labels(clean, kind, float(value), num_classes=10, seed=seed, dataset=dataset)
    return Cell(name=f"{dataset} {noise}", features=emb["features"][subset], noisy=noisy, clean=clean,
                test_features=emb["features"][test], test_labels=labels[test], num_classes=10, seed=seed)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.embeddings", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=str, required=True, choices=("digits", *ENCODER_DATASETS),
                        help="which embedding file to build")
    parser.add_argument("--data_path", type=str, default=None, help="the dataset's folder (not for digits)")
    parser.add_argument("--out", type=str, required=True, help="folder the .npz is written to")
    parser.add_argument("--epochs", type=int, default=15, help="encoder training epochs on the test images")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    return parser


def main(argv: list[str] | None = None) -> Path:
    args = get_args_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    path = build_embeddings(args.dataset, args.data_path, Path(args.out), args.epochs)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    run_cli(main)
