"""From a FINE selection to a list of suspected label errors: a suggested label per sample, a ranking from most to
least suspect, and the noise the selection implies (rate per class, transition between given and suggested labels).

    sel = fine_select(features, labels, num_classes)
    suggested, alignment = suggest_labels(features, sel.eigvecs)
    order = rank_suspects(sel.clean_prob, sel.scores)           # most suspect first
    noise = estimate_noise(sel.clean_mask, labels, suggested, num_classes)
"""
from __future__ import annotations

import torch

_CHUNK = 16384  # rows per block: bounds the (rows, C) temporary


def suggest_labels(features: torch.Tensor, vectors: torch.Tensor, *,
                   normalize: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """The class whose direction each sample's feature aligns with best, and that alignment.

    Parameters
    ----------
    features : (N, D) float penultimate features
    vectors : (C, D) class directions (FINE's eigenvectors, ``Selection.eigvecs``); zero rows never win
    normalize : align ``z / |z|`` (FINE's score), else raw ``z``

    Returns
    -------
    suggested : (N,) int64 class ids; alignment : (N,) float32 ``|<v_k, z / |z|>|`` of the suggested class
    """
    vectors = vectors.to(device=features.device, dtype=features.dtype)
    empty = ~vectors.any(1)
    suggested = torch.empty(features.shape[0], dtype=torch.int64, device=features.device)
    alignment = torch.empty(features.shape[0], dtype=torch.float32, device=features.device)
    for start in range(0, features.shape[0], _CHUNK):
        block = features[start:start + _CHUNK]
        dots = (block @ vectors.T).abs()
        if normalize:
            dots = dots / torch.linalg.vector_norm(block, dim=1, keepdim=True).clamp_min(torch.finfo(block.dtype).tiny)
        dots = dots.masked_fill(empty, -1.0)
        best = dots.max(1)
        suggested[start:start + _CHUNK], alignment[start:start + _CHUNK] = best.indices, best.values.float()
    return suggested, alignment


def rank_suspects(clean_prob: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """(N,) int64 sample indices from most to least suspect: increasing clean probability, ties broken by increasing
    score (lower alignment is more suspect), then by index."""
    by_score = torch.argsort(scores.float(), stable=True)
    return by_score[torch.argsort(clean_prob.float()[by_score], stable=True)]


def estimate_noise(clean_mask: torch.Tensor, labels: torch.Tensor, suggested: torch.Tensor,
                   num_classes: int) -> dict:
    """The label noise a selection implies.

    A selected sample is taken to be correctly labelled; a flagged one to belong to its suggested class.

    Parameters
    ----------
    clean_mask : (N,) bool selected samples; labels : (N,) int given labels; suggested : (N,) int suggested labels
    num_classes : C

    Returns
    -------
    dict with ``noise_rate`` (fraction flagged), ``class_noise_rate`` (C floats: fraction flagged among each given
    label; 0 for an empty class), ``flagged_counts`` (C x C ints: flagged samples by given label (row) and suggested
    label (column)) and ``transition`` (C x C floats: row k = the estimated distribution of the true label among the
    samples labelled k, selected samples counting as k; all zeros for an empty class).
    """
    mask = clean_mask.bool().cpu()
    given, suggested = labels.long().cpu(), suggested.long().cpu()
    n = len(given)
    counts = torch.bincount(given, minlength=num_classes)
    flagged = torch.bincount(given[~mask] * num_classes + suggested[~mask],
                             minlength=num_classes * num_classes).reshape(num_classes, num_classes)
    true = flagged + torch.diag(torch.bincount(given[mask], minlength=num_classes))
    rows = counts.clamp_min(1).unsqueeze(1).double()
    return {"noise_rate": float((~mask).sum()) / max(n, 1),
            "class_noise_rate": (flagged.sum(1).double() / counts.clamp_min(1)).tolist(),
            "flagged_counts": flagged.tolist(), "transition": (true.double() / rows).tolist()}
