"""Bookkeeping of a selection round, the same for every trainer: its quality, its file, its TensorBoard entries."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from engine.logger import RunLogger
from fine.atomic import atomic_write
from fine.selection import Selection, selection_metrics

QUALITY = ("precision", "recall", "f1", "specificity", "accuracy")


def selection_quality(sel: Selection, is_clean: torch.Tensor | None, labels: torch.Tensor,
                      num_classes: int) -> dict:
    """How good one round's selection is, positives = samples whose noisy label is right.

    Parameters
    ----------
    sel : the round's selection of n samples; is_clean : (n,) bool or None when no clean labels are known
    labels : (n,) int noisy labels; num_classes : C

    Returns
    -------
    ``selected`` (int), for FINE ``split_classes`` (int: the classes its mixtures cut in two, the others kept whole)
    and, with clean labels, ``precision``, ``recall``, ``f1``, ``specificity``, ``accuracy``,
    ``auc`` (ROC AUC of ``clean_prob`` for telling clean from noisy; None when one kind is absent) and
    ``class_recall`` (C floats: the fraction of each class's correctly labelled samples that were selected) and
    ``uncorrupted_recall`` (the recall over the classes holding no wrong label; None when every class holds some).
    """
    mask = sel.clean_mask.cpu()
    out: dict = {"selected": int(mask.sum())}
    if sel.split_classes is not None:
        out["split_classes"] = int(sel.split_classes.sum())
    if is_clean is None:
        return out
    is_clean = is_clean.cpu()
    metrics = selection_metrics(mask, is_clean, labels=labels.cpu(), num_classes=num_classes)
    out.update({k: metrics[k] for k in QUALITY})
    both = 0 < int(is_clean.sum()) < len(is_clean)
    out["auc"] = float(roc_auc_score(is_clean.numpy(), sel.clean_prob.float().cpu().numpy())) if both else None
    out["class_recall"] = metrics["per_class_recall"]
    out["uncorrupted_recall"] = metrics["uncorrupted_recall"]
    return out


def save_selection_round(path: Path, sel: Selection, noisy_labels: np.ndarray, clean_labels: np.ndarray | None,
                         samples: torch.Tensor | None = None) -> None:
    """Save one round's selection (``indices``, ``scores``, ``clean_prob``, ``mask``, labels) as ``.npz``, atomically.

    ``samples`` (n,): the dataset indices of ``sel``'s rows when it covers a subset of the training set (saved as
    ``samples``; ``indices`` then holds the selected samples' dataset indices, and the other arrays are per row).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = sel.clean_mask.nonzero().squeeze(1).cpu()
    arrays = {"indices": (rows if samples is None else samples.cpu()[rows]).numpy(),
              "mask": sel.clean_mask.cpu().numpy(), "scores": sel.scores.float().cpu().numpy(),
              "clean_prob": sel.clean_prob.float().cpu().numpy(), "noisy_labels": np.asarray(noisy_labels)}
    if clean_labels is not None:
        arrays["clean_labels"] = np.asarray(clean_labels)
    if samples is not None:
        arrays["samples"] = samples.cpu().numpy()
    atomic_write(path, lambda f: np.savez_compressed(f, **arrays))


def log_round(logger: RunLogger, tag: str, sel: Selection, is_clean: torch.Tensor | None, quality: dict,
              epoch: int) -> None:
    """TensorBoard entries of a round beyond its metrics row: per-class clean recall as scalars
    (``<tag>/class_recall/<k>``) and histograms of the score and the clean probability of clean and noisy samples."""
    if is_clean is None:
        return
    logger.scalars({f"{tag}/class_recall/{k}": v for k, v in enumerate(quality["class_recall"])}, epoch)
    is_clean = is_clean.to(sel.scores.device)
    for name, values in (("score", sel.scores), ("prob", sel.clean_prob)):
        logger.histogram(f"{tag}/{name}_clean", values[is_clean], epoch)
        logger.histogram(f"{tag}/{name}_noisy", values[~is_clean], epoch)
