"""scikit-learn's bundled digits (1,797 8x8 grey images, 10 classes, no download) with one fixed train/test split."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.datasets import load_digits

DIGITS_TEST_SIZE = 360
DIGITS_SPLIT_SEED = 0  # fixed, independent of the run seed, so every run evaluates on the same test set


@dataclass
class DigitsData:
    """Digits as uint8 images: ``*_images`` (N, 1, 8, 8) with values 0..255, ``*_labels`` (N,) int64."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: list[str]


def stratified_test_indices(labels: np.ndarray, test_size: int, seed: int) -> np.ndarray:
    """Indices of a stratified random test split.

    Class c gets ``floor(test_size * n_c / N)`` samples plus one for the classes with the largest remainders (ties to
    the lower class id), so the split has exactly ``test_size`` samples in the data's class proportions.

    Parameters
    ----------
    labels : (N,) int array.
    test_size : number of test samples, in [0, N].
    seed : seed of the local generator choosing the samples.

    Returns
    -------
    np.ndarray (test_size,) int64, sorted.
    """
    counts = np.bincount(labels)
    exact = test_size * counts / counts.sum()
    per_class = np.floor(exact).astype(np.int64)
    remainder_order = np.argsort(-(exact - per_class), kind="stable")
    per_class[remainder_order[:test_size - per_class.sum()]] += 1
    rng = np.random.default_rng(seed)
    chosen = [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in enumerate(per_class)]
    return np.sort(np.concatenate(chosen))


def load_digits_split() -> DigitsData:
    """The digits data set split into 1,437 train / 360 test images, stratified, with the fixed split seed 0.

    Pixel values 0..16 are scaled to 0..255 (``round(v * 255 / 16)``) and stored as uint8. Each split keeps the
    original scikit-learn order, which is the "standard training order" that noisy label files follow.
    """
    raw = load_digits()
    images = np.rint(raw.images * (255.0 / 16.0)).astype(np.uint8)[:, None]  # (1797, 1, 8, 8)
    labels = raw.target.astype(np.int64)
    test = stratified_test_indices(labels, DIGITS_TEST_SIZE, DIGITS_SPLIT_SEED)
    train = np.setdiff1d(np.arange(len(labels)), test)
    return DigitsData(train_images=images[train], train_labels=labels[train], test_images=images[test],
                      test_labels=labels[test], classes=[str(d) for d in range(10)])
