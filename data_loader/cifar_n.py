"""CIFAR-N human noisy labels (Wei et al., ICLR 2022): real annotators' labels for the CIFAR training sets.

Expected files (``bash scripts/download_cifar_n.sh <data_path>`` fetches them; the project does not ship them)::

    <data_path>/cifar-n/CIFAR-10_human.pt    dict of (50000,) numpy arrays: clean_label, aggre_label, worse_label,
                                             random_label1, random_label2, random_label3
    <data_path>/cifar-n/CIFAR-100_human.pt   dict of (50000,) numpy arrays: clean_label, noisy_label (+ coarse labels)

Every array follows the standard CIFAR training order; ``clean_label`` must equal the CIFAR training labels.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from fine.errors import UserError

CIFAR_N_FILES = {"cifar10": "CIFAR-10_human.pt", "cifar100": "CIFAR-100_human.pt"}
# --noise_label choice -> key of the published dict.
CIFAR_N_LABELS = {
    "cifar10": {"aggre": "aggre_label", "random1": "random_label1", "random2": "random_label2",
                "random3": "random_label3", "worst": "worse_label"},
    "cifar100": {"noisy": "noisy_label"},
}


def cifar_n_path(dataset: str, data_path: str | os.PathLike) -> Path:
    """``<data_path>/cifar-n/CIFAR-10_human.pt`` (cifar10) or ``CIFAR-100_human.pt`` (cifar100)."""
    return Path(data_path) / "cifar-n" / CIFAR_N_FILES[dataset]


def check_human_noise(dataset: str, noise_kind: str, noise_label: str | None) -> None:
    """Refuse an inconsistent ``--noise_kind human`` / ``--noise_label`` pair with a one-line UserError."""
    choices = "; ".join(f"{d}: {', '.join(labels)}" for d, labels in CIFAR_N_LABELS.items())
    if noise_kind != "human":
        if noise_label is not None:
            raise UserError(f"--noise_label {noise_label} needs --noise_kind human (CIFAR-N); drop it or add "
                            f"--noise_kind human")
        return
    if dataset not in CIFAR_N_LABELS:
        raise UserError(f"--noise_kind human (CIFAR-N) exists for cifar10 and cifar100 only, not {dataset}; "
                        f"use another --noise_kind")
    if noise_label is None:
        raise UserError(f"--noise_kind human needs --noise_label, one of {', '.join(CIFAR_N_LABELS[dataset])} "
                        f"for {dataset}")
    if noise_label not in CIFAR_N_LABELS[dataset]:
        raise UserError(f"--noise_label {noise_label} is not a CIFAR-N label set of {dataset}; use one of "
                        f"{', '.join(CIFAR_N_LABELS[dataset])} ({choices})")


def read_cifar_n_file(path: str | os.PathLike, fix: str) -> object:
    """Unpickle a CIFAR-N ``.pt`` file without running code from it (only numpy arrays may be rebuilt).

    ``fix`` ends the one-line :class:`UserError` raised when the file cannot be read. Returns what the file holds
    (the published files hold a dict of (50000,) numpy arrays); the caller checks its contents.
    """
    try:
        # weights_only: a downloaded pickle may run no code; allow just what numpy arrays unpickle with.
        reconstruct = (np._core if hasattr(np, "_core") else np.core).multiarray._reconstruct
        allowed = [reconstruct, (reconstruct, "numpy.core.multiarray._reconstruct"), np.ndarray, np.dtype,
                   *(type(np.dtype(t)) for t in (np.int64, np.int32, np.uint8))]
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, weights_only=True, map_location="cpu")
    except Exception as err:  # any failure to unpickle means a damaged file
        raise UserError(f"CIFAR-N file {path} cannot be read ({type(err).__name__}); {fix}") from None


def load_cifar_n_labels(dataset: str, data_path: str | os.PathLike, noise_label: str,
                        clean_labels: np.ndarray) -> tuple[np.ndarray, dict]:
    """The CIFAR-N human labels of one label set, checked against the CIFAR training labels.

    Parameters
    ----------
    dataset : "cifar10" or "cifar100".
    data_path : folder holding ``cifar-n/``.
    noise_label : a key of ``CIFAR_N_LABELS[dataset]`` (e.g. "worst", "aggre", "noisy").
    clean_labels : (N,) int64 CIFAR training labels in the standard order.

    Returns
    -------
    labels : np.ndarray (N,) int64 human labels.
    info : dict with ``kind`` ("human"), ``label``, ``rate`` (None), ``seed`` (None), ``label_file``, ``reused``
        (True), ``noise_rate`` (realised on the N samples).
    """
    check_human_noise(dataset, "human", noise_label)
    path = cifar_n_path(dataset, data_path)
    fix = f"re-download it with: bash scripts/download_cifar_n.sh {data_path}"
    if not path.is_file():
        raise UserError(f"CIFAR-N file {path} is missing; download it with: bash scripts/download_cifar_n.sh "
                        f"{data_path}")
    content = read_cifar_n_file(path, fix)
    key = CIFAR_N_LABELS[dataset][noise_label]
    if not isinstance(content, dict) or key not in content or "clean_label" not in content:
        found = ", ".join(map(str, content)) if isinstance(content, dict) else type(content).__name__
        raise UserError(f"CIFAR-N file {path} lacks the keys {key!r} and 'clean_label' (found: {found}); {fix}")
    labels, file_clean = (np.asarray(content[k]) for k in (key, "clean_label"))
    n = len(clean_labels)
    num_classes = 10 if dataset == "cifar10" else 100
    for name, arr in ((key, labels), ("clean_label", file_clean)):
        if arr.shape != (n,) or not np.issubdtype(arr.dtype, np.integer):
            raise UserError(f"CIFAR-N file {path} holds {name} of shape {arr.shape} dtype {arr.dtype}, but the "
                            f"{dataset} training set has {n} samples; {fix}")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise UserError(f"CIFAR-N file {path} holds {key} values outside [0, {num_classes}); {fix}")
    if not np.array_equal(file_clean, clean_labels):
        raise UserError(f"CIFAR-N file {path} does not match the CIFAR training set order; re-download both: "
                        f"bash scripts/download_cifar.sh {data_path} and bash scripts/download_cifar_n.sh {data_path}")
    labels = labels.astype(np.int64)
    info = {"kind": "human", "label": noise_label, "rate": None, "seed": None, "label_file": str(path),
            "reused": True, "noise_rate": float((labels != clean_labels).mean()) if n else 0.0}
    return labels, info
