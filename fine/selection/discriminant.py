"""FINE's margin in the whitened feature space: ``score="lda"`` of :func:`fine.selection.fine_select` (FINE's
registered selector, ``--score lda``).

FINE's margin compares a sample's alignment with its own class's direction to its best alignment with another
class's. On features whose classes overlap (human label noise, where a wrongly labelled image tends to look like the
class it was given) the raw feature space measures that badly: a few high-variance directions, shared by all
classes, dominate the cosines. Here the comparison is made after whitening by the pooled within-class covariance,
which is Fisher's linear discriminant: with class means ``mu_k`` and the shared covariance ``S`` of the reference
samples,

    delta_k(z) = z^T S^-1 mu_k - mu_k^T S^-1 mu_k / 2,    score_i = delta_{y_i}(z_i) - max_{k != y_i} delta_k(z_i)

(half the difference of squared Mahalanobis distances to the nearest other class and to the own class), so a
negative score means the sample lies closer to another class. ``S`` is shrunk towards ``tr(S)/D * I`` with the
Ledoit-Wolf coefficient (``shrinkage="auto"``) or a given one. The scores are split per class as the margin's are
(2-component mixture; a class is split only when its lower component has a negative mean), and with ``refine=r`` the
class means and covariance are re-estimated ``r`` times from the samples selected so far and all samples rescored.

Everything is formed from per-class sums and one D x D gram, accumulated in row blocks: memory O(C D + D^2), never
an N x N or C x D x D array; cost O(N D^2) per estimate.
"""
from __future__ import annotations

import torch

from fine.selection.linalg import class_top_eigenvectors
from fine.selection.result import Selection
from fine.selection.split import split_validated

_BLOCK = 16384  # rows per block
DECISIONS = ("sign", "mixture")


def discriminant_statistics(features: torch.Tensor, labels: torch.Tensor, num_classes: int,
                            mask: torch.Tensor | None = None, *,
                            shrinkage: float | str = "auto") -> tuple[torch.Tensor, torch.Tensor, float]:
    """Linear discriminant weights of the masked samples' class means and shrunk pooled within-class covariance.

    Parameters
    ----------
    features : (N, D) float tensor; labels : (N,) int64 in [0, num_classes)
    mask : (N,) bool, the samples that define the statistics (None = all)
    shrinkage : "auto" (Ledoit-Wolf) or a float in [0, 1]: ``S = (1 - a) S_w + a tr(S_w) / D I``

    Returns
    -------
    weights : (C, D) float64 ``S^-1 mu_k``; offsets : (C,) float64 ``-mu_k^T S^-1 mu_k / 2`` (classes without masked
    samples get weights 0 and offset -inf, so they never win); the shrinkage used.
    """
    x = features.to(torch.float64)
    n_all, d = x.shape
    keep = torch.ones(n_all, dtype=torch.bool, device=x.device) if mask is None else mask.to(x.device)
    sums = torch.zeros(num_classes, d, dtype=torch.float64, device=x.device)
    gram = torch.zeros(d, d, dtype=torch.float64, device=x.device)
    for start in range(0, n_all, _BLOCK):
        rows = x[start:start + _BLOCK][keep[start:start + _BLOCK]]
        lab = labels[start:start + _BLOCK][keep[start:start + _BLOCK]]
        sums.index_add_(0, lab, rows)
        gram += rows.T @ rows
    counts = torch.bincount(labels[keep], minlength=num_classes).to(torch.float64)
    n = counts.sum().clamp_min(1)
    means = sums / counts.clamp_min(1).unsqueeze(1)
    scatter = gram - (means * counts.unsqueeze(1)).T @ means  # sum_i (z_i - mu_{y_i})(z_i - mu_{y_i})^T
    cov = scatter / n
    target = cov.trace() / d
    if shrinkage == "auto":
        # Ledoit-Wolf: beta = sum_i |r_i r_i^T - S|_F^2 / n^2 = (sum_i |r_i|^4 / n - |S|_F^2) / n
        fourth = torch.zeros((), dtype=torch.float64, device=x.device)
        for start in range(0, n_all, _BLOCK):
            rows = x[start:start + _BLOCK][keep[start:start + _BLOCK]]
            lab = labels[start:start + _BLOCK][keep[start:start + _BLOCK]]
            fourth += ((rows - means[lab]).square().sum(1).square()).sum()
        beta = (fourth / n - cov.square().sum()) / n
        delta = (cov - target * torch.eye(d, dtype=torch.float64, device=x.device)).square().sum()
        alpha = float((beta.clamp_min(0) / delta).clamp(0, 1)) if bool(delta > 0) else 1.0
    else:
        alpha = float(shrinkage)
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"shrinkage must be 'auto' or lie in [0, 1], got {shrinkage}")
    shrunk = (1 - alpha) * cov + alpha * target * torch.eye(d, dtype=torch.float64, device=x.device)
    if not bool(target > 0):  # all masked features equal within their classes: Euclidean distances
        shrunk = torch.eye(d, dtype=torch.float64, device=x.device)
    weights, info = torch.linalg.solve_ex(shrunk, means.T)
    if int(info):  # singular (e.g. a coordinate zero in every sample, and no shrinkage): the pseudo-inverse
        weights = torch.linalg.pinv(shrunk, hermitian=True) @ means.T
    weights = weights.T  # (C, D)
    offsets = -0.5 * (weights * means).sum(1)
    present = counts > 0
    weights = torch.where(present.unsqueeze(1), weights, 0.0)
    offsets = torch.where(present, offsets, -torch.inf)
    return weights, offsets, alpha


def discriminant_margins(features: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor,
                         offsets: torch.Tensor) -> torch.Tensor:
    """(N,) float32 ``delta_{y_i}(z_i) - max_{k != y_i} delta_k(z_i)`` for (C, D) weights and (C,) offsets
    (0 for a single class)."""
    out = torch.empty(features.shape[0], dtype=torch.float32, device=features.device)
    for start in range(0, features.shape[0], _BLOCK):
        block = slice(start, start + _BLOCK)
        delta = features[block].to(torch.float64) @ weights.T + offsets  # (rows, C)
        own = labels[block].unsqueeze(1)
        other = delta.scatter(1, own, -torch.inf).amax(1) if weights.shape[0] > 1 else delta.gather(1, own).squeeze(1)
        out[block] = (delta.gather(1, own).squeeze(1) - other).float()
    return out


def discriminant_scores(features: torch.Tensor, labels: torch.Tensor, num_classes: int,
                        mask: torch.Tensor | None = None, *, shrinkage: float | str = "auto") -> torch.Tensor:
    """(N,) float32 margins of every sample under the discriminant of the masked samples (see the module)."""
    weights, offsets, _ = discriminant_statistics(features, labels, num_classes, mask, shrinkage=shrinkage)
    return discriminant_margins(features, labels, weights, offsets)


def discriminant_select(features: torch.Tensor, labels: torch.Tensor, num_classes: int, *,
                        ref_mask: torch.Tensor | None = None, refine: int = 1, decision: str = "sign",
                        shrinkage: float | str = "auto", fit: str = "gmm", threshold: float = 0.5,
                        max_iter: int = 100, tol: float = 1e-6, reg_covar: float = 1e-6) -> Selection:
    """FINE with ``score="lda"``: discriminant margins, re-estimated ``refine`` times on the selection (see the
    module docstring). Inputs as :func:`fine.selection.fine_select` (validated there).

    ``decision="sign"``: a sample is clean when its margin is >= 0 (no other class's discriminant beats its own;
    ``clean_prob`` = sigmoid of the margin); ``"mixture"``: FINE's per-class split of the margins (``fit``,
    ``threshold``; a class is split only when its lower component has a negative mean).

    Returns
    -------
    Selection whose ``scores`` are the last margins and ``eigvecs`` the (C, D) FINE directions
    (:func:`fine.selection.class_top_eigenvectors`) of the reference samples of the last estimate.
    """
    if refine < 0:
        raise ValueError(f"refine must be at least 0, got {refine}")
    if decision not in DECISIONS:
        raise ValueError(f"unknown decision {decision!r}; choose one of {', '.join(DECISIONS)}")
    options = {"max_iter": max_iter, "tol": tol, "reg_covar": reg_covar}
    mask = ref_mask
    for _ in range(refine + 1):
        weights, offsets, _ = discriminant_statistics(features, labels, num_classes, mask, shrinkage=shrinkage)
        scores = discriminant_margins(features, labels, weights, offsets)
        if decision == "sign":
            sel = Selection(clean_mask=scores >= 0, clean_prob=torch.sigmoid(scores), scores=scores)
        else:
            ref_counts = None if mask is None else torch.bincount(labels[mask], minlength=num_classes)
            sel = split_validated(scores, labels, num_classes, ref_counts, fit, threshold, options, True)
        previous, mask = mask, sel.clean_mask
    # the classes' FINE directions of the last reference set, for suggested labels (fine.label_issues)
    sel.eigvecs = class_top_eigenvectors(features, labels, num_classes, previous).float()
    return sel
