"""FINE's per-sample scores: alignment of each feature with its noisy class's direction (abs, squared, margin); the
fourth score, lda, is the linear discriminant's margin (module ``discriminant``)."""
from __future__ import annotations

import math

import torch

from fine.amp import exact_float32
from fine.selection.linalg import SCORE_CHUNK

SCORES = ("abs", "squared", "margin", "lda")  # "lda": fine/selection/discriminant.py


def alignment_scores(features: torch.Tensor, labels: torch.Tensor, vectors: torch.Tensor, *, score: str = "abs",
                     normalize: bool = True, norms: torch.Tensor | None = None) -> torch.Tensor:
    """FINE scores ``|<v_{y_i}, z_i / |z_i|>|`` (``score="squared"``: the square; ``normalize=False``: raw ``z_i``).

    ``score="margin"``: ``|<v_{y_i}, z_i / |z_i|>| - max_{k != y_i} |<v_k, z_i / |z_i|>|``, the sample's alignment
    with its own class's direction minus its best alignment with another class's (0 for a single class). The class
    directions of penultimate ReLU features share a large common component (cosines between them near 0.9), which
    the plain score measures along with class membership; the margin cancels it.

    Computed in row blocks as ``features_block @ vectors.T`` and a gather of each row's own class, so no (N, D)
    copy of the vectors is made (cost N D C flops, memory ``SCORE_CHUNK x C``).

    Parameters
    ----------
    features : (N, D) float tensor; labels : (N,) int64; vectors : (C, D) class directions
    norms : (N,) precomputed row norms of ``features`` (optional)

    Returns
    -------
    (N,) float32 scores; rows with zero norm score 0.
    """
    if score not in SCORES:
        raise ValueError(f"unknown score {score!r}; choose one of {', '.join(SCORES)}")
    if score == "lda":
        raise ValueError("score='lda' needs class means and a covariance, not directions; use fine_select or "
                         "fine.selection.discriminant.discriminant_scores")
    vectors = vectors.to(device=features.device, dtype=features.dtype)
    labels = labels.to(device=features.device, dtype=torch.int64)
    if score == "margin":
        return _margin_scores(features, labels, vectors, normalize, norms)
    dots = torch.empty(features.shape[0], dtype=features.dtype, device=features.device)
    with exact_float32():  # a TF32 product would move scores near a class's split by ~1e-3
        for start in range(0, features.shape[0], SCORE_CHUNK):
            block = slice(start, start + SCORE_CHUNK)
            dots[block] = (features[block] @ vectors.T).gather(1, labels[block].unsqueeze(1)).squeeze(1)
    if normalize:
        norms = torch.linalg.vector_norm(features, dim=1) if norms is None else norms
        dots = dots / norms.clamp_min(torch.finfo(features.dtype).tiny)
    out = dots.abs() if score == "abs" else dots.square()
    return out.float()


def _margin_scores(features: torch.Tensor, labels: torch.Tensor, vectors: torch.Tensor, normalize: bool,
                   norms: torch.Tensor | None) -> torch.Tensor:
    """(N,) float32 margins of :func:`alignment_scores` (validated labels and vectors on the features' device)."""
    if normalize and norms is None:
        norms = torch.linalg.vector_norm(features, dim=1)
    out = torch.empty(features.shape[0], dtype=features.dtype, device=features.device)
    for start in range(0, features.shape[0], SCORE_CHUNK):
        block = slice(start, start + SCORE_CHUNK)
        with exact_float32():
            dots = features[block] @ vectors.T  # (rows, C)
        if normalize:
            dots = dots / norms[block].clamp_min(torch.finfo(features.dtype).tiny).unsqueeze(1)
        dots = dots.abs()
        own = labels[block].unsqueeze(1)
        other = dots.scatter(1, own, -math.inf).amax(1) if vectors.shape[0] > 1 else torch.zeros_like(dots[:, 0])
        out[block] = dots.gather(1, own).squeeze(1) - other
    return out.float()

