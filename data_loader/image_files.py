"""A dataset of image files on disk with noisy labels: the file-backed twin of
:class:`data_loader.datasets.NoisyDataset`."""
from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from fine.errors import UserError


class ImageFileDataset(Dataset):
    """Images read from files on demand, with their noisy (and, when known, clean) labels.

    Item ``i`` is ``(transform(Image.open(paths[i]).convert("RGB")), int(noisy_labels[i]), i)``.

    Parameters
    ----------
    paths : N image file paths.
    noisy_labels : (N,) int array, the labels training sees.
    clean_labels : (N,) int array or None when unknown (web-scale noisy training sets).
    transform : callable mapping an RGB PIL image to a float tensor; None returns the PIL image.
    """

    def __init__(self, paths: Sequence[str], noisy_labels: np.ndarray, clean_labels: np.ndarray | None = None,
                 transform: Callable[[Image.Image], torch.Tensor] | None = None) -> None:
        self.paths = list(paths)
        self.noisy_labels = np.asarray(noisy_labels, dtype=np.int64)
        self.clean_labels = None if clean_labels is None else np.asarray(clean_labels, dtype=np.int64)
        for labels in (self.noisy_labels, self.clean_labels):
            if labels is not None and labels.shape != (len(self.paths),):
                raise ValueError(f"labels of shape {labels.shape} do not match {len(self.paths)} image paths")
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        with Image.open(self.paths[i]) as file:
            image = file.convert("RGB")
        return (self.transform(image) if self.transform is not None else image), int(self.noisy_labels[i]), i

    @property
    def targets(self) -> np.ndarray:
        """The noisy labels (N,), under the name torchvision datasets use."""
        return self.noisy_labels

    def view(self, transform: Callable[[Image.Image], torch.Tensor] | None) -> ImageFileDataset:
        """The same samples and label arrays (shared, not copied) seen through another ``transform``."""
        other = copy.copy(self)
        other.transform = transform
        return other

    def subset(self, indices: np.ndarray) -> ImageFileDataset:
        """A new dataset of the samples at ``indices`` (in that order), re-indexed 0..len(indices)-1."""
        indices = np.asarray(indices, dtype=np.int64)
        clean = None if self.clean_labels is None else self.clean_labels[indices]
        return ImageFileDataset([self.paths[i] for i in indices], self.noisy_labels[indices], clean, self.transform)


def read_pairs(path: Path, source: str) -> tuple[list[str], np.ndarray]:
    """Read a ``<relative path> <int label>`` list file (one pair per line, whitespace-separated).

    Parameters
    ----------
    path : the list file.
    source : how to obtain the data set, appended to the error when the file is missing.

    Returns
    -------
    keys : N relative paths, in file order.
    labels : (N,) int64 labels.
    """
    tokens = read_file(path, source).split()
    if len(tokens) % 2:
        raise UserError(f"{path} is malformed: expected lines '<image path> <label>', got an odd number of fields")
    try:
        labels = np.array(tokens[1::2], dtype=np.int64)
    except ValueError as err:
        raise UserError(f"{path} is malformed: labels must be integers ({err})") from err
    return tokens[0::2], labels


def read_file(path: Path, source: str) -> str:
    """The text of ``path``; a missing file raises :class:`UserError` naming it and saying where the data comes from."""
    if not path.is_file():
        raise UserError(f"missing {path}; {source}")
    return path.read_text()


def require_dir(path: Path, source: str) -> Path:
    """``path`` if it is a folder; otherwise :class:`UserError` naming it and saying where the data comes from."""
    if not path.is_dir():
        raise UserError(f"missing folder {path}; {source}")
    return path
