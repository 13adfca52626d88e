"""FINE's last step: a 2-component 1-D mixture per noisy class on the scores, all classes batched."""
from __future__ import annotations

import torch

from fine.mixture import MixtureFit, fit_mixture, pad_groups
from fine.selection.checks import check_labels
from fine.selection.result import Selection, empty_selection, warn_kept
from fine.selection.scores import SCORES

FITS = ("gmm", "kmeans", "bmm")
VECTORS = ("eigen", "mean")


def check_fine_options(fit: str, threshold: float, *, score: str = "abs", vector: str = "eigen",
                   normalize: bool = True) -> None:
    """Validate FINE's option values (ValueError naming the bad one)."""
    if fit not in FITS:
        raise ValueError(f"unknown fit {fit!r}; choose one of {', '.join(FITS)}")
    if vector not in VECTORS:
        raise ValueError(f"unknown vector {vector!r}; choose one of {', '.join(VECTORS)}")
    if score not in SCORES:
        raise ValueError(f"unknown score {score!r}; choose one of {', '.join(SCORES)}")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must lie in [0, 1], got {threshold}")
    if fit == "bmm" and not normalize:
        raise ValueError("fit='bmm' needs scores in [0, 1]; use normalize=True or another fit")
    if fit == "bmm" and score in ("margin", "lda"):
        raise ValueError(f"fit='bmm' needs scores in [0, 1] but {score} scores are margins; use fit='gmm' or "
                         f"'kmeans'")


def split_validated(scores: torch.Tensor, labels: torch.Tensor, num_classes: int, ref_counts: torch.Tensor | None,
                  fit: str, threshold: float, options: dict, margin: bool = False) -> Selection:
    """:func:`split_scores` on validated inputs; warnings point at the caller of the public function."""
    padded, valid, cols = pad_groups(scores, labels, num_classes)
    result: MixtureFit = fit_mixture(fit, padded, valid, **({} if fit == "kmeans" else options))
    counts = torch.bincount(labels, minlength=num_classes)
    ref_counts = counts if ref_counts is None else ref_counts.to(counts)
    few_refs = (counts > 0) & (ref_counts < 2)
    flat = (counts > 0) & ~few_refs & result.degenerate
    if bool(few_refs.any()):
        warn_kept(few_refs.nonzero().squeeze(1).tolist(), "have fewer than 2 reference samples", stacklevel=4)
    if bool(flat.any()):
        warn_kept(flat.nonzero().squeeze(1).tolist(), "have scores with zero variance", stacklevel=4)
    whole = few_refs | result.degenerate
    if margin:  # one population unless the lower component lies on the other classes' side of 0
        whole = whole | (result.means[:, 0] >= 0)
    keep_all = whole[labels]
    posterior = torch.where(keep_all, 1.0, result.posterior[labels, cols])
    clean_mask = keep_all | (posterior > threshold)
    return Selection(clean_mask=clean_mask, clean_prob=posterior.float(), scores=scores,
                     means=result.means, variances=result.variances, weights=result.weights, n_iter=result.n_iter,
                     converged=result.converged, split_classes=(counts > 0) & ~whole)


def split_scores(scores: torch.Tensor, labels: torch.Tensor, num_classes: int, *,
                 ref_counts: torch.Tensor | None = None, fit: str = "gmm", threshold: float = 0.5,
                 max_iter: int = 100, tol: float = 1e-6, reg_covar: float = 1e-6, margin: bool = False) -> Selection:
    """FINE's last step: split each noisy class's scores with a 2-component 1-D mixture (all classes batched).

    Parameters
    ----------
    scores : (N,) float alignment scores (higher = cleaner)
    labels : (N,) int noisy labels in [0, num_classes)
    num_classes : C
    ref_counts : (C,) int number of reference samples per class (those that defined its vector); None = the class
        sizes. Classes with fewer than 2 keep all their samples.
    fit, threshold, max_iter, tol, reg_covar : as in :func:`fine_select`
    margin : the scores are margins (``alignment_scores(..., score="margin")``): a class is split only when its
        lower mixture component has a negative mean, else kept whole (``score="margin"`` of :func:`fine_select`)

    Returns
    -------
    Selection on ``scores.device`` with ``eigvecs`` None. Classes with fewer than 2 reference samples, or whose
    scores are all equal, keep all their samples (clean_prob 1) and trigger one warning per call.
    """
    check_fine_options(fit, threshold, score="margin" if margin else "abs")
    if scores.dim() != 1 or not scores.is_floating_point():
        raise ValueError(f"scores must be a floating (N,) tensor, got {scores.dtype} {tuple(scores.shape)}")
    labels = check_labels(labels, scores.shape[0], num_classes, scores.device)
    if ref_counts is not None and tuple(ref_counts.shape) != (num_classes,):
        raise ValueError(f"ref_counts must have shape ({num_classes},), got {tuple(ref_counts.shape)}")
    if scores.shape[0] == 0:
        return empty_selection(scores.device)
    return split_validated(scores, labels, num_classes, ref_counts, fit, threshold,
                         {"max_iter": max_iter, "tol": tol, "reg_covar": reg_covar}, margin)

