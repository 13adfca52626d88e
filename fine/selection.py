"""Clean-sample selectors: FINE (eigenvector alignment + per-class mixture) and the loss-based baselines.

Every selector is a pure function of tensors returning a :class:`Selection`, so a trainer swaps them with one flag.

FINE, per noisy class k (``fine_select``):

1. ``u_k`` = top eigenvector of the uncentred gram ``sum z z^T`` of the class's reference samples
   (:func:`class_top_eigenvectors`; never a full SVD, never an ``n_k x n_k`` or ``N x N`` matrix);
2. every sample gets ``score_i = |<u_{y_i}, z_i / |z_i|>|`` (:func:`alignment_scores`);
3. a 2-component 1-D mixture per class on the scores (``fine.mixture``, all classes batched); a sample is clean
   when the posterior of the higher-mean component exceeds ``threshold``.

``score="margin"`` replaces step 2 by the sample's score against its own class minus its best score against any
other class, and step 3 splits only the classes whose lower component has a negative mean; the others stay whole.

:func:`split_scores` is step 3 alone. :func:`fine_select_distributed` runs FINE on features sharded across
processes: per-class grams (:func:`class_grams`) are all-reduced and turned into directions by
:func:`eigvecs_from_grams`, each process scores its own rows, and the scores are gathered by sample index before the
mixture fit, giving the same selection as ``fine_select`` on the assembled features.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from fine.amp import exact_float32
from fine.distributed import all_reduce_sum, gather_by_index, is_distributed, is_main_process
from fine.mixture import MixtureFit, fit_gmm, fit_mixture, pad_groups

FITS = ("gmm", "kmeans", "bmm")
SCORES = ("abs", "squared", "margin", "lda")  # "lda": fine/discriminant.py
VECTORS = ("eigen", "mean")
_SCORE_CHUNK = 16384  # rows per block when scoring: bounds the (rows, C) temporary


@dataclass
class Selection:
    """Result of one selection round. Tensors live on the device of the selector's input.

    Attributes
    ----------
    clean_mask : (N,) bool, samples selected as clean
    clean_prob : (N,) float32, probability of being clean (hard 0/1 for 2-means and small-loss)
    scores : (N,) float32, the per-sample statistic the selector split: FINE alignment score (higher = cleaner),
        or the loss (small-loss) / current normalised loss (loss-GMM; lower = cleaner)
    eigvecs : (C, D) float32 class directions used by FINE (rows of classes without reference samples are 0);
        None for the baselines
    means, variances, weights : (C, 2) float64 per-class mixture parameters (column 1 = higher-mean component;
        a single row for loss-GMM), or None
    n_iter : (C,) int64 EM iterations per class, or None (2-means, small-loss)
    converged : (C,) bool, or None
    split_classes : (C,) bool, FINE: the classes whose samples the mixture split; the others (no samples, fewer
        than 2 reference samples, equal scores, or with ``score="margin"`` no population closer to another class)
        were kept whole. None for the baselines
    """

    clean_mask: torch.Tensor
    clean_prob: torch.Tensor
    scores: torch.Tensor
    eigvecs: torch.Tensor | None = None
    means: torch.Tensor | None = None
    variances: torch.Tensor | None = None
    weights: torch.Tensor | None = None
    n_iter: torch.Tensor | None = None
    converged: torch.Tensor | None = None
    split_classes: torch.Tensor | None = None

    def clean_indices(self) -> torch.Tensor:
        """(S,) int64 indices of the selected samples, ascending."""
        return self.clean_mask.nonzero().squeeze(1)


def _check_labels(labels: torch.Tensor, n: int, num_classes: int, device: torch.device) -> torch.Tensor:
    """Validate (N,) integer labels in [0, num_classes); returns them as int64 on ``device``."""
    if labels.dim() != 1 or labels.shape[0] != n or labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be an integer (N,) tensor with N = {n}, "
                         f"got {labels.dtype} {tuple(labels.shape)}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    labels = labels.to(device=device, dtype=torch.int64)
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}), got [{int(labels.min())}, {int(labels.max())}]")
    return labels


def _check_inputs(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate features and labels; returns float32/float64 features and int64 labels on the features' device."""
    if features.dim() != 2 or not features.is_floating_point():
        raise ValueError(f"features must be a floating (N, D) tensor, got {features.dtype} {tuple(features.shape)}")
    if features.dtype not in (torch.float32, torch.float64):
        features = features.float()
    return features, _check_labels(labels, features.shape[0], num_classes, features.device)


def _check_mask(mask: torch.Tensor | None, n: int, device: torch.device, name: str) -> torch.Tensor | None:
    if mask is None:
        return None
    if mask.dtype != torch.bool or tuple(mask.shape) != (n,):
        raise ValueError(f"{name} must be a bool tensor of shape ({n},), got {mask.dtype} {tuple(mask.shape)}")
    return mask.to(device)


def _class_rows(features: torch.Tensor, labels: torch.Tensor, num_classes: int,
                mask: torch.Tensor | None) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield ``(k, rows)`` with ``rows`` the (n_k, D) features of class k's masked samples, for classes with n_k > 0.

    Rows are gathered into one reused buffer the size of the largest class, so the extra memory is one class, not a
    sorted copy of the whole matrix. A yielded tensor is overwritten by the next one.
    """
    index = torch.arange(features.shape[0], device=features.device) if mask is None else mask.nonzero().squeeze(1)
    class_of = labels[index]
    index = index[torch.argsort(class_of, stable=True)]
    counts = torch.bincount(class_of, minlength=num_classes).tolist()
    if not index.numel():
        return
    buffer = features.new_empty(max(counts), features.shape[1])
    start = 0
    for k, n in enumerate(counts):
        if n:
            yield k, torch.index_select(features, 0, index[start:start + n], out=buffer[:n])
        start += n


def _column_sums(rows: torch.Tensor) -> torch.Tensor:
    """(D,) float64 column sums of (n, D) rows, as a matrix-vector product (a float64 reduction would copy rows)."""
    return (rows.T @ rows.new_ones(rows.shape[0])).to(torch.float64)


def _fix_sign(vectors: torch.Tensor, sums: torch.Tensor) -> torch.Tensor:
    """Flip each row of ``vectors`` (C, D) to point along the class sum (C, D); where the two are orthogonal, make
    the largest-magnitude entry positive."""
    along = (vectors * sums).sum(1)
    ortho = along.abs() <= 1e-12 * sums.norm(dim=1) * vectors.norm(dim=1)
    largest = vectors.gather(1, vectors.abs().argmax(1, keepdim=True)).squeeze(1)
    sign = torch.where(ortho, largest.sign(), along.sign())
    return vectors * torch.where(sign == 0, 1.0, sign).unsqueeze(1)


def _top_eigvec(rows: torch.Tensor, start: torch.Tensor, *, max_iter: int,
                tol: float) -> tuple[torch.Tensor, bool]:
    """Top eigenvector (D,) float64 of ``rows^T rows`` by Lanczos with full reorthogonalisation.

    Each step costs two matrix-vector products with ``rows`` (n, D); the Ritz vector of the Krylov basis is
    accepted once ``|A u - theta u| <= tol * theta``, which bounds the angle to the true eigenvector by
    ``tol * theta / gap``. Returns the vector and whether it converged.
    """
    d = rows.shape[1]
    steps = min(max_iter, d)
    basis = torch.zeros(d, steps, dtype=torch.float64, device=rows.device)  # Q
    images = torch.zeros_like(basis)  # A Q
    basis[:, 0] = start / start.norm()
    for j in range(steps):
        q = basis[:, j]
        image = (rows.T @ (rows @ q.to(rows.dtype))).to(torch.float64)
        images[:, j] = image
        q_j, a_j = basis[:, :j + 1], images[:, :j + 1]
        ritz = q_j.T @ a_j
        theta, vecs = torch.linalg.eigh(0.5 * (ritz + ritz.T))
        s = vecs[:, -1]
        u = q_j @ s
        if not bool(theta[-1] > 0):  # A q = 0: the rows are all zero (the jitter rules out orthogonality)
            return torch.zeros_like(u), True
        residual = (a_j @ s - theta[-1] * u).norm()
        if bool(residual <= tol * theta[-1]):
            return u, True
        nxt = image - q_j @ (q_j.T @ image)
        nxt = nxt - q_j @ (q_j.T @ nxt)
        size = nxt.norm()
        if bool(size <= 1e-10 * image.norm()):  # the basis spans an invariant subspace: u is exact
            return u, True
        if j + 1 < steps:
            basis[:, j + 1] = nxt / size
    return u, False


def class_top_eigenvectors(features: torch.Tensor, labels: torch.Tensor, num_classes: int,
                           mask: torch.Tensor | None = None, *, max_iter: int = 64,
                           tol: float = 1e-5) -> torch.Tensor:
    """Top eigenvector of each class's uncentred gram matrix ``sum_{i: y_i = k, mask_i} z_i z_i^T``.

    Classes are processed one at a time on a gathered (n_k, D) block that stays in cache while Lanczos iterates
    from the class mean direction (for penultimate features the mean is close to ``u_k``, so a few steps suffice);
    a class that does not converge in ``max_iter`` steps falls back to ``torch.linalg.eigh`` of its D x D gram.
    Grams of all classes are never formed on the default path (that alone costs N D^2 flops).

    Parameters
    ----------
    features : (N, D) float tensor
    labels : (N,) int64 noisy labels in [0, num_classes)
    num_classes : C
    mask : (N,) bool, samples that define the vectors (None = all)
    max_iter : Lanczos steps before the eigh fallback
    tol : relative residual ``|A u - theta u| / theta`` accepted as converged

    Returns
    -------
    (C, D) float64 unit vectors, sign chosen so that each points along its class's mean feature; zero rows for
    classes with no (masked) samples or only all-zero features.
    """
    features, labels = _check_inputs(features, labels, num_classes)
    mask = _check_mask(mask, features.shape[0], features.device, "mask")
    d = features.shape[1]
    gen = torch.Generator().manual_seed(0)
    # a fixed small random component keeps the start vector off any eigenvector orthogonal to the class mean
    jitter = torch.randn(d, generator=gen, dtype=torch.float64).to(features.device)
    jitter = 1e-2 * jitter / jitter.norm()
    vectors = torch.zeros(num_classes, d, dtype=torch.float64, device=features.device)
    sums = torch.zeros_like(vectors)
    for k, rows in _class_rows(features, labels, num_classes, mask):
        total = _column_sums(rows)
        sums[k] = total
        start = total / total.norm() if bool(total.norm() > 0) else torch.zeros_like(total)
        u, converged = _top_eigvec(rows, start + jitter, max_iter=max_iter, tol=tol)
        if not converged:
            gram = (rows.T @ rows).to(torch.float64)
            u = torch.linalg.eigh(gram)[1][:, -1]
        vectors[k] = u
    return _fix_sign(vectors, sums)


def class_sums(features: torch.Tensor, labels: torch.Tensor, num_classes: int,
               mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class feature sums and counts of the masked samples (deterministic on CPU and CUDA).

    Returns
    -------
    sums : (C, D) float64; counts : (C,) int64
    """
    features, labels = _check_inputs(features, labels, num_classes)
    mask = _check_mask(mask, features.shape[0], features.device, "mask")
    sums = torch.zeros(num_classes, features.shape[1], dtype=torch.float64, device=features.device)
    for start in range(0, features.shape[0], _SCORE_CHUNK):
        block = slice(start, start + _SCORE_CHUNK)
        onehot = torch.nn.functional.one_hot(labels[block], num_classes).to(features.dtype)
        if mask is not None:
            onehot = onehot * mask[block].unsqueeze(1)
        sums += (onehot.T @ features[block]).to(torch.float64)
    counts = torch.bincount(labels if mask is None else labels[mask], minlength=num_classes)
    return sums, counts


def class_grams(features: torch.Tensor, labels: torch.Tensor, num_classes: int,
                mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-class uncentred grams, sums and counts of the masked samples: the statistics to all-reduce in a
    distributed run before :func:`eigvecs_from_grams`. Costs N D^2 flops.

    Returns
    -------
    grams : (C, D, D) float64; sums : (C, D) float64; counts : (C,) int64
    """
    features, labels = _check_inputs(features, labels, num_classes)
    mask = _check_mask(mask, features.shape[0], features.device, "mask")
    d = features.shape[1]
    grams = torch.zeros(num_classes, d, d, dtype=torch.float64, device=features.device)
    sums = torch.zeros(num_classes, d, dtype=torch.float64, device=features.device)
    for k, rows in _class_rows(features, labels, num_classes, mask):
        grams[k] = (rows.T @ rows).to(torch.float64)
        sums[k] = _column_sums(rows)
    counts = torch.bincount(labels if mask is None else labels[mask], minlength=num_classes)
    return grams, sums, counts


def eigvecs_from_grams(grams: torch.Tensor, sums: torch.Tensor) -> torch.Tensor:
    """(C, D) float64 top eigenvectors of (C, D, D) grams by batched ``eigh``, signed along the (C, D) class sums;
    zero rows for all-zero grams."""
    vectors = torch.linalg.eigh(grams.to(torch.float64))[1][..., -1]
    empty = ~grams.flatten(1).any(1)
    return _fix_sign(torch.where(empty.unsqueeze(1), 0.0, vectors), sums.to(torch.float64))


def _row_norms(features: torch.Tensor) -> torch.Tensor:
    """(N,) row norms; raises ValueError on NaN/Inf features."""
    norms = torch.linalg.vector_norm(features, dim=1)
    if not bool(torch.isfinite(norms).all()):
        if not bool(torch.isfinite(features).all()):
            raise ValueError("features contain NaN or Inf; check the model's outputs before selecting")
        raise ValueError("feature norms overflow; rescale the features")
    return norms


def alignment_scores(features: torch.Tensor, labels: torch.Tensor, vectors: torch.Tensor, *, score: str = "abs",
                     normalize: bool = True, norms: torch.Tensor | None = None) -> torch.Tensor:
    """FINE scores ``|<v_{y_i}, z_i / |z_i|>|`` (``score="squared"``: the square; ``normalize=False``: raw ``z_i``).

    ``score="margin"``: ``|<v_{y_i}, z_i / |z_i|>| - max_{k != y_i} |<v_k, z_i / |z_i|>|``, the sample's alignment
    with its own class's direction minus its best alignment with another class's (0 for a single class). The class
    directions of penultimate ReLU features share a large common component (cosines between them near 0.9), which
    the plain score measures along with class membership; the margin cancels it.

    Computed in row blocks as ``features_block @ vectors.T`` and a gather of each row's own class, so no (N, D)
    copy of the vectors is made (cost N D C flops, memory ``_SCORE_CHUNK x C``).

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
                         "fine.discriminant.discriminant_scores")
    vectors = vectors.to(device=features.device, dtype=features.dtype)
    labels = labels.to(device=features.device, dtype=torch.int64)
    if score == "margin":
        return _margin_scores(features, labels, vectors, normalize, norms)
    dots = torch.empty(features.shape[0], dtype=features.dtype, device=features.device)
    with exact_float32():  # a TF32 product would move scores near a class's split by ~1e-3
        for start in range(0, features.shape[0], _SCORE_CHUNK):
            block = slice(start, start + _SCORE_CHUNK)
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
    for start in range(0, features.shape[0], _SCORE_CHUNK):
        block = slice(start, start + _SCORE_CHUNK)
        with exact_float32():
            dots = features[block] @ vectors.T  # (rows, C)
        if normalize:
            dots = dots / norms[block].clamp_min(torch.finfo(features.dtype).tiny).unsqueeze(1)
        dots = dots.abs()
        own = labels[block].unsqueeze(1)
        other = dots.scatter(1, own, -math.inf).amax(1) if vectors.shape[0] > 1 else torch.zeros_like(dots[:, 0])
        out[block] = dots.gather(1, own).squeeze(1) - other
    return out.float()


def _warn_kept(classes: list[int], reason: str, *, stacklevel: int = 3) -> None:
    shown = ", ".join(map(str, classes[:10])) + (", ..." if len(classes) > 10 else "")
    warnings.warn(f"{len(classes)} class(es) [{shown}] {reason}; all their samples are kept as clean",
                  stacklevel=stacklevel)


def _empty_selection(device: torch.device) -> Selection:
    empty = torch.zeros(0, device=device)
    return Selection(clean_mask=empty.bool(), clean_prob=empty, scores=empty)


def _check_options(fit: str, threshold: float, *, score: str = "abs", vector: str = "eigen",
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


def _split_scores(scores: torch.Tensor, labels: torch.Tensor, num_classes: int, ref_counts: torch.Tensor | None,
                  fit: str, threshold: float, options: dict, margin: bool = False) -> Selection:
    """:func:`split_scores` on validated inputs; warnings point at the caller of the public function."""
    padded, valid, cols = pad_groups(scores, labels, num_classes)
    result: MixtureFit = fit_mixture(fit, padded, valid, **({} if fit == "kmeans" else options))
    counts = torch.bincount(labels, minlength=num_classes)
    ref_counts = counts if ref_counts is None else ref_counts.to(counts)
    few_refs = (counts > 0) & (ref_counts < 2)
    flat = (counts > 0) & ~few_refs & result.degenerate
    if bool(few_refs.any()):
        _warn_kept(few_refs.nonzero().squeeze(1).tolist(), "have fewer than 2 reference samples", stacklevel=4)
    if bool(flat.any()):
        _warn_kept(flat.nonzero().squeeze(1).tolist(), "have scores with zero variance", stacklevel=4)
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
    _check_options(fit, threshold, score="margin" if margin else "abs")
    if scores.dim() != 1 or not scores.is_floating_point():
        raise ValueError(f"scores must be a floating (N,) tensor, got {scores.dtype} {tuple(scores.shape)}")
    labels = _check_labels(labels, scores.shape[0], num_classes, scores.device)
    if ref_counts is not None and tuple(ref_counts.shape) != (num_classes,):
        raise ValueError(f"ref_counts must have shape ({num_classes},), got {tuple(ref_counts.shape)}")
    if scores.shape[0] == 0:
        return _empty_selection(scores.device)
    return _split_scores(scores, labels, num_classes, ref_counts, fit, threshold,
                         {"max_iter": max_iter, "tol": tol, "reg_covar": reg_covar}, margin)


def fine_select(features: torch.Tensor, labels: torch.Tensor, num_classes: int, *,
                ref_mask: torch.Tensor | None = None, fit: str = "gmm", threshold: float = 0.5, score: str = "abs",
                normalize: bool = True, vector: str = "eigen", max_iter: int = 100, tol: float = 1e-6,
                reg_covar: float = 1e-6, eigvecs: torch.Tensor | None = None) -> Selection:
    """FINE: select the samples whose features align with their noisy class's principal direction.

    Parameters
    ----------
    features : (N, D) float tensor (any device; computed there), penultimate features of all samples
    labels : (N,) int noisy labels in [0, num_classes)
    num_classes : C
    ref_mask : (N,) bool, samples whose features define each class's vector (the previous round's selection);
        None = every sample of the class. All N samples are scored either way.
    fit : per-class split of the scores: "gmm" (2-component Gaussian mixture, scikit-learn-equivalent EM),
        "kmeans" (2-means; clean = higher cluster, clean_prob 1/0), "bmm" (beta mixture; needs scores in [0, 1],
        i.e. ``normalize=True``)
    threshold : a sample is clean when the posterior of the higher-mean component exceeds it
    score : "abs" = ``|<u, z/|z|>|`` (published code), "squared" = ``<u, z/|z|>^2`` (paper), "margin" = the
        abs score against the sample's class minus its highest abs score against another class
        (:func:`alignment_scores`); with "margin" a class is split only when its lower mixture component has a
        negative mean (a population closer to other classes' directions than to its own), so a class holding no
        mislabelled samples, e.g. one that asymmetric noise never flips into, is kept whole. Not with ``fit="bmm"``.
        "lda" = the margin of Fisher's linear discriminant instead (class means and the pooled within-class
        covariance of the reference samples, Ledoit-Wolf shrinkage), re-estimated once on the samples whose margin
        is >= 0, clean = margin >= 0 (:func:`fine.discriminant.discriminant_select`; ``fit``, ``threshold``,
        ``vector``, ``normalize`` and ``eigvecs`` unused). Not with ``fit="bmm"``.
    normalize : divide each feature by its norm before the inner product
    vector : "eigen" = top eigenvector of the class's uncentred gram, "mean" = normalised class mean
    max_iter, tol, reg_covar : mixture EM options (scikit-learn's meaning; the published values by default)
    eigvecs : (C, D) precomputed class directions (e.g. from :func:`eigvecs_from_grams`); ``vector`` is then
        unused and ``ref_mask`` only decides which classes have fewer than 2 reference samples.

    Returns
    -------
    Selection on ``features.device``. Classes with fewer than 2 reference samples, or whose scores are all equal,
    keep all their samples (clean_prob 1) and trigger one warning per call.

    Raises
    ------
    ValueError : NaN/Inf features, labels out of range, masks or eigvecs of the wrong shape, unknown options.
    """
    _check_options(fit, threshold, score=score, vector=vector, normalize=normalize)
    features, labels = _check_inputs(features, labels, num_classes)
    n, d = features.shape
    ref_mask = _check_mask(ref_mask, n, features.device, "ref_mask")
    if eigvecs is not None and tuple(eigvecs.shape) != (num_classes, d):
        raise ValueError(f"eigvecs must have shape ({num_classes}, {d}), got {tuple(eigvecs.shape)}")
    if n == 0:
        return _empty_selection(features.device)
    norms = _row_norms(features)
    if score == "lda":  # the margin in the whitened space, re-estimated on its selection (fine/discriminant.py)
        from fine.discriminant import discriminant_select
        return discriminant_select(features, labels, num_classes, ref_mask=ref_mask, fit=fit, threshold=threshold,
                                   max_iter=max_iter, tol=tol, reg_covar=reg_covar)

    if eigvecs is not None:
        vectors = eigvecs.to(device=features.device, dtype=torch.float64)
    elif vector == "eigen":
        vectors = class_top_eigenvectors(features, labels, num_classes, ref_mask)
    else:
        sums, _ = class_sums(features, labels, num_classes, ref_mask)
        vectors = sums / sums.norm(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)
    scores = alignment_scores(features, labels, vectors, score=score, normalize=normalize, norms=norms)

    ref_counts = None if ref_mask is None else torch.bincount(labels[ref_mask], minlength=num_classes)
    sel = _split_scores(scores, labels, num_classes, ref_counts, fit, threshold,
                        {"max_iter": max_iter, "tol": tol, "reg_covar": reg_covar}, score == "margin")
    sel.eigvecs = vectors.to(torch.float32)
    return sel


def fine_select_distributed(features_local: torch.Tensor, labels_local: torch.Tensor, index_local: torch.Tensor,
                            num_samples: int, num_classes: int, *, ref_mask_local: torch.Tensor | None = None,
                            fit: str = "gmm", threshold: float = 0.5, score: str = "abs", normalize: bool = True,
                            vector: str = "eigen", max_iter: int = 100, tol: float = 1e-6,
                            reg_covar: float = 1e-6) -> Selection:
    """:func:`fine_select` on features sharded across processes; call it on every rank.

    Each rank holds the rows of its own samples. Per-class grams (``vector="eigen"``; C x D x D float64) or sums
    (``"mean"``) and reference counts are all-reduced, every rank takes the class directions from them
    (:func:`eigvecs_from_grams`, signed as :func:`fine_select` signs them), scores its own rows, and the scores
    are gathered by sample index so that every rank fits the same per-class mixtures on the same full-length
    scores. The result equals ``fine_select`` on the assembled features up to the eigen-solver's rounding
    (``eigh`` of the gram here, Lanczos there). In a plain run (world of size 1) no communication happens.

    Parameters
    ----------
    features_local : (n_local, D) float features of this rank's samples (any device)
    labels_local : (n_local,) int noisy labels of those samples
    index_local : (n_local,) int their dataset indices in [0, num_samples); across ranks every sample must appear
        exactly once (shard with ``pad=False``)
    num_samples : N; num_classes : C
    ref_mask_local : (n_local,) bool, which of this rank's samples are reference samples (None = all)
    fit, threshold, score, normalize, vector, max_iter, tol, reg_covar : as in :func:`fine_select`

    Returns
    -------
    Selection over all N samples (identical on every rank), on ``features_local.device``. Warnings about classes
    kept whole are issued on rank 0 only.

    Raises
    ------
    ValueError on every rank : NaN/Inf features on any rank, or samples missing or repeated across the shards.
    """
    _check_options(fit, threshold, score=score, vector=vector, normalize=normalize)
    if score == "lda":
        raise ValueError("score='lda' is not available across processes yet; select on one process")
    features, labels = _check_inputs(features_local, labels_local, num_classes)
    n_local, device = features.shape[0], features.device
    ref_mask = _check_mask(ref_mask_local, n_local, device, "ref_mask_local")
    index = index_local.to(device=device, dtype=torch.int64)
    if index.dim() != 1 or index.shape[0] != n_local:
        raise ValueError(f"index_local must be an int (n_local,) tensor with n_local = {n_local}, "
                         f"got {tuple(index_local.shape)}")
    if n_local and (int(index.min()) < 0 or int(index.max()) >= num_samples):
        raise ValueError(f"index_local must lie in [0, {num_samples}), got [{int(index.min())}, {int(index.max())}]")
    norms = torch.linalg.vector_norm(features, dim=1)
    # one all-reduce checks the shards: how often each sample occurs, and how many rows are not finite
    check = torch.cat([torch.bincount(index, minlength=num_samples), (~torch.isfinite(norms)).sum().reshape(1)])
    check = all_reduce_sum(check)
    if int(check[-1]):
        raise ValueError("features contain NaN or Inf (or overflowing norms) on some rank; check the model's outputs "
                         "before selecting")
    if not bool((check[:-1] == 1).all()):
        raise ValueError("every sample must be in exactly one rank's shard; extract features with an unpadded "
                         "sampler (pad=False)")
    if num_samples == 0:
        return _empty_selection(device)

    if vector == "eigen":
        grams, sums, ref_counts = class_grams(features, labels, num_classes, ref_mask)
        vectors = eigvecs_from_grams(all_reduce_sum(grams), all_reduce_sum(sums))
    else:
        sums, ref_counts = class_sums(features, labels, num_classes, ref_mask)
        sums = all_reduce_sum(sums)
        vectors = sums / sums.norm(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)
    ref_counts = all_reduce_sum(ref_counts)
    scores = alignment_scores(features, labels, vectors, score=score, normalize=normalize, norms=norms)

    # scores (float32) and labels travel together, exactly, as float64
    both = gather_by_index(torch.stack([scores.to(torch.float64), labels.to(torch.float64)], 1), index, num_samples)
    scores, labels = both[:, 0].to(torch.float32), both[:, 1].to(torch.int64)
    with warnings.catch_warnings():
        if not is_main_process():
            warnings.simplefilter("ignore")
        sel = _split_scores(scores, labels, num_classes, ref_counts, fit, threshold,
                            {"max_iter": max_iter, "tol": tol, "reg_covar": reg_covar}, score == "margin")
    sel.eigvecs = vectors.to(torch.float32)
    return sel


def _check_losses(losses: torch.Tensor) -> torch.Tensor:
    if losses.dim() != 1 or not losses.is_floating_point():
        raise ValueError(f"losses must be a floating (N,) tensor, got {losses.dtype} {tuple(losses.shape)}")
    if not bool(torch.isfinite(losses).all()):
        raise ValueError("losses contain NaN or Inf; check the model's outputs before selecting")
    return losses


def small_loss_select(losses: torch.Tensor, labels: torch.Tensor | None, keep_ratio: float, *,
                      per_class: bool = False, num_classes: int | None = None) -> Selection:
    """Keep the ``round(keep_ratio * n)`` smallest-loss samples, over all samples or within each noisy class.

    Ties are broken by sample index (stable sort). ``round`` is round-half-to-even, as Python's.

    Parameters
    ----------
    losses : (N,) float per-sample losses
    labels : (N,) int noisy labels (needed when ``per_class``)
    keep_ratio : fraction in [0, 1] to keep (1 - forget rate)
    per_class : rank within each noisy class instead of globally
    num_classes : C (default: max label + 1)

    Returns
    -------
    Selection with hard clean_prob and ``scores`` = the losses.
    """
    losses = _check_losses(losses)
    if not 0.0 <= keep_ratio <= 1.0:
        raise ValueError(f"keep_ratio must lie in [0, 1], got {keep_ratio}")
    n = losses.shape[0]
    order = torch.argsort(losses, stable=True)
    if per_class:
        if labels is None:
            raise ValueError("per_class=True needs the noisy labels")
        if num_classes is None:
            num_classes = int(labels.max()) + 1 if n else 1
        labels = _check_labels(labels, n, num_classes, losses.device)
        order = order[torch.argsort(labels[order], stable=True)]  # by class, then loss, then index
        counts = torch.bincount(labels, minlength=num_classes)
        starts = torch.cumsum(counts, 0) - counts
        rank_sorted = torch.arange(n, device=losses.device) - starts[labels[order]]
        keep = torch.round(keep_ratio * counts.to(torch.float64)).to(torch.int64)
        selected_sorted = rank_sorted < keep[labels[order]]
    else:
        selected_sorted = torch.arange(n, device=losses.device) < round(keep_ratio * n)
    mask = torch.empty(n, dtype=torch.bool, device=losses.device)
    mask[order] = selected_sorted
    return Selection(clean_mask=mask, clean_prob=mask.float(), scores=losses.float())


def loss_gmm_select(losses: torch.Tensor, *, threshold: float = 0.5, history: torch.Tensor | None = None,
                    reg_covar: float = 5e-4, max_iter: int = 10, tol: float = 1e-2) -> Selection:
    """DivideMix's split: a 2-component GMM on min-max normalised per-sample losses; clean = low-loss component.

    Parameters
    ----------
    losses : (N,) float per-sample cross-entropy losses of this epoch
    threshold : clean when the posterior of the lower-mean component exceeds it
    history : (H, N) normalised losses of previous epochs (this function's ``scores``); the GMM is fitted on the
        mean of these rows and the current normalised loss. DivideMix at 90% noise averages the last 5 epochs,
        i.e. pass the previous 4.
    reg_covar, max_iter, tol : GMM options (DivideMix's values by default)

    Returns
    -------
    Selection with ``scores`` = the current normalised losses (append them to ``history``) and (1, 2) mixture
    parameters. If all losses are equal, every sample is kept (with a warning).
    """
    losses = _check_losses(losses).to(torch.float64)
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must lie in [0, 1], got {threshold}")
    n = losses.shape[0]
    if n == 0:
        return _empty_selection(losses.device)
    span = losses.max() - losses.min()
    normalised = (losses - losses.min()) / torch.where(span > 0, span, 1.0)
    values = normalised
    if history is not None:
        if history.dim() != 2 or history.shape[1] != n:
            raise ValueError(f"history must have shape (H, {n}), got {tuple(history.shape)}")
        values = torch.cat([history.to(normalised), normalised.unsqueeze(0)]).mean(0)
    result = fit_gmm(values.unsqueeze(0), torch.ones(1, n, dtype=torch.bool, device=losses.device),
                     max_iter=max_iter, tol=tol, reg_covar=reg_covar)
    if bool(result.degenerate[0]):
        _warn_kept([0], "(all samples) have equal losses")
        prob = torch.ones(n, dtype=torch.float64, device=losses.device)
        mask = torch.ones(n, dtype=torch.bool, device=losses.device)
    else:
        prob = 1.0 - result.posterior[0]
        mask = prob > threshold
    return Selection(clean_mask=mask, clean_prob=prob.float(), scores=normalised.float(), means=result.means,
                     variances=result.variances, weights=result.weights, n_iter=result.n_iter,
                     converged=result.converged)


def selection_metrics(clean_mask: torch.Tensor | np.ndarray, is_clean: torch.Tensor | np.ndarray, *,
                      labels: torch.Tensor | np.ndarray | None = None, num_classes: int | None = None) -> dict:
    """Detection quality of a selection, positives = truly clean samples.

    Parameters
    ----------
    clean_mask : (N,) bool, selected samples; is_clean : (N,) bool, noisy label == true label
    labels : (N,) int noisy labels; when given, per-class precision/recall/F1 over samples with that noisy label
    num_classes : C for the per-class lists (default: max label + 1)

    Returns
    -------
    dict with floats ``precision``, ``recall``, ``f1``, ``specificity``, ``accuracy`` (fractions) and int
    ``selected``; with ``labels``, lists ``per_class_precision``, ``per_class_recall``, ``per_class_f1``,
    ``per_class_noisy`` (ints: wrongly labelled samples per noisy class) and ``uncorrupted_recall``, the recall over
    the classes holding no wrongly labelled sample (e.g. those asymmetric noise never flips into; None when every
    class holds some). A ratio whose denominator is 0 (nothing selected, no clean or no noisy samples) is 0, as
    scikit-learn's ``zero_division=0``.
    """
    sel = torch.as_tensor(clean_mask).bool().cpu()
    pos = torch.as_tensor(is_clean).bool().cpu()
    if sel.shape != pos.shape or sel.dim() != 1:
        raise ValueError(f"clean_mask and is_clean must be (N,) of equal shape, got {tuple(sel.shape)} "
                         f"and {tuple(pos.shape)}")

    def ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
        return torch.where(den > 0, num / den.clamp_min(1), 0.0)

    def prf(tp: torch.Tensor, n_sel: torch.Tensor, n_pos: torch.Tensor) -> tuple[torch.Tensor, ...]:
        precision, recall = ratio(tp, n_sel), ratio(tp, n_pos)
        return precision, recall, ratio(2 * precision * recall, precision + recall)

    tp = (sel & pos).sum().double()
    tn = (~sel & ~pos).sum().double()
    n_sel, n_pos, n = sel.sum().double(), pos.sum().double(), sel.numel()
    precision, recall, f1 = prf(tp, n_sel, n_pos)
    out = {"precision": float(precision), "recall": float(recall), "f1": float(f1),
           "specificity": float(ratio(tn, n - n_pos)), "accuracy": float(ratio(tp + tn, torch.tensor(float(n)))),
           "selected": int(n_sel)}
    if labels is not None:
        lab = torch.as_tensor(labels).long().cpu()
        if lab.shape != sel.shape:
            raise ValueError(f"labels must have shape {tuple(sel.shape)}, got {tuple(lab.shape)}")
        c = num_classes if num_classes is not None else (int(lab.max()) + 1 if n else 0)

        def count(m: torch.Tensor) -> torch.Tensor:
            return torch.bincount(lab[m], minlength=c).double()

        p, r, f = prf(count(sel & pos), count(sel), count(pos))
        noisy = count(~pos)
        whole = (noisy == 0)[lab] & pos
        out.update(per_class_precision=p.tolist(), per_class_recall=r.tolist(), per_class_f1=f.tolist(),
                   per_class_noisy=noisy.long().tolist(),
                   uncorrupted_recall=float((sel & whole).sum() / whole.sum()) if bool(whole.any()) else None)
    return out


SELECTORS = ("fine", "small-loss", "loss-gmm")


@dataclass(frozen=True)
class SelectorConfig:
    """Which detector a selection round runs, with its options (the trainers build one from their flags).

    Attributes
    ----------
    kind : "fine" (:func:`fine_select`), "small-loss" (:func:`small_loss_select` within each noisy class) or
        "loss-gmm" (:func:`loss_gmm_select`)
    threshold : clean when the clean component's posterior exceeds it (fine, loss-gmm)
    fit, score, vector, normalize : FINE's options (:func:`fine_select`)
    max_iter, tol : EM options of FINE's per-class mixtures (loss-gmm keeps DivideMix's own)
    keep_ratio : small-loss: fraction of each class kept (1 - forget rate)
    """

    kind: str = "fine"
    threshold: float = 0.5
    fit: str = "gmm"
    score: str = "abs"
    vector: str = "eigen"
    normalize: bool = True
    max_iter: int = 100
    tol: float = 1e-6
    keep_ratio: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in SELECTORS:
            raise ValueError(f"unknown selector {self.kind!r}; choose one of {', '.join(SELECTORS)}")
        if self.kind == "small-loss" and self.keep_ratio is None:
            raise ValueError("the small-loss selector needs keep_ratio (1 - forget rate)")
        _check_options(self.fit, self.threshold, score=self.score, vector=self.vector, normalize=self.normalize)


def select_samples(config: SelectorConfig, features: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor,
                   num_classes: int, *, positions: torch.Tensor | None = None, num_samples: int | None = None,
                   ref_mask: torch.Tensor | None = None, loss_history: torch.Tensor | None = None) -> Selection:
    """One selection round over ``num_samples`` samples, of which this process holds some rows.

    In a plain run the process holds every row, in order (``positions`` None), and the detector runs on the tensors
    as given (FINE's Lanczos path, no copy). Under torchrun each process passes its own rows and their
    ``positions``; FINE all-reduces the per-class grams (:func:`fine_select_distributed`) and the loss-based
    detectors gather the logits by position. Every process gets the same selection of all rows.

    Parameters
    ----------
    config : the detector and its options
    features : (n_local, D) float penultimate features (FINE); logits : (n_local, C) float (loss-based detectors)
    labels : (n_local,) int noisy labels of the rows
    num_classes : C
    positions : (n_local,) int positions of the rows in [0, num_samples), each position on exactly one process;
        None in a plain run (the rows are all the samples, in order)
    num_samples : n, the samples of the round (default: n_local)
    ref_mask : (n_local,) bool, FINE's reference samples among the rows (None = whole classes)
    loss_history : (H, n) loss-gmm: the previous rounds' normalised losses (:func:`loss_gmm_select`)

    Returns
    -------
    Selection over the n samples, on the features' (or logits') device.
    """
    distributed = is_distributed()
    if distributed and positions is None:
        raise ValueError("under torchrun every process must pass the positions of its rows")
    n = features.shape[0] if num_samples is None else num_samples
    if not distributed and positions is not None:
        positions = torch.as_tensor(positions).to(features.device)
        if len(positions) != n or not bool((positions == torch.arange(n, device=positions.device)).all()):
            raise ValueError("in a plain run the rows must be all the samples in order (pass positions=None)")
        positions = None
    if config.kind == "fine":
        options = dict(ref_mask=ref_mask, fit=config.fit, threshold=config.threshold, score=config.score,
                       normalize=config.normalize, vector=config.vector, max_iter=config.max_iter, tol=config.tol)
        if positions is None:
            return fine_select(features, labels, num_classes, **options)
        options["ref_mask_local"] = options.pop("ref_mask")
        return fine_select_distributed(features, labels, positions, n, num_classes, **options)
    if positions is not None:
        logits = gather_by_index(logits, positions.to(logits.device), n)
        labels = gather_by_index(labels.to(logits.device), positions.to(logits.device), n)
    losses = torch.nn.functional.cross_entropy(logits.float(), labels.to(logits.device).long(), reduction="none")
    if config.kind == "small-loss":
        return small_loss_select(losses, labels, config.keep_ratio, per_class=True, num_classes=num_classes)
    return loss_gmm_select(losses, threshold=config.threshold, history=loss_history)
