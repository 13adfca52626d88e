"""FINE (Kim et al. 2021) on one process and on features sharded over many, and its registry entry."""
from __future__ import annotations

import warnings

import torch

from fine.distributed import all_reduce_sum, gather_by_index, is_main_process
from fine.selection.checks import check_inputs, check_mask, row_norms
from fine.selection.discriminant import DECISIONS, discriminant_select
from fine.selection.linalg import class_grams, class_sums, class_top_eigenvectors, eigvecs_from_grams
from fine.selection.result import Selection, empty_selection
from fine.selection.scores import alignment_scores
from fine.selection.registry import P_THRESHOLD, Inputs, Option, SelectorSpec, _gathered, register
from fine.selection.scores import SCORES
from fine.selection.split import FITS, VECTORS, check_fine_options, split_validated


def fine_select(features: torch.Tensor, labels: torch.Tensor, num_classes: int, *,
                ref_mask: torch.Tensor | None = None, fit: str = "gmm", threshold: float = 0.5, score: str = "abs",
                normalize: bool = True, vector: str = "eigen", max_iter: int = 100, tol: float = 1e-6,
                reg_covar: float = 1e-6, eigvecs: torch.Tensor | None = None, lda_refine: int = 1,
                lda_decision: str = "sign") -> Selection:
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
        is >= 0, clean = margin >= 0 (:func:`fine.selection.discriminant.discriminant_select`; ``fit``,
        ``threshold``, ``vector``, ``normalize`` and ``eigvecs`` unused). Not with ``fit="bmm"``.
    lda_refine, lda_decision : with ``score="lda"`` only: how often the discriminant is re-estimated on its
        selection, and "sign" (clean = margin >= 0) or "mixture" (FINE's per-class split of the margins by ``fit``
        and ``threshold``)
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
    check_fine_options(fit, threshold, score=score, vector=vector, normalize=normalize)
    features, labels = check_inputs(features, labels, num_classes)
    n, d = features.shape
    ref_mask = check_mask(ref_mask, n, features.device, "ref_mask")
    if eigvecs is not None and tuple(eigvecs.shape) != (num_classes, d):
        raise ValueError(f"eigvecs must have shape ({num_classes}, {d}), got {tuple(eigvecs.shape)}")
    if n == 0:
        return empty_selection(features.device)
    norms = row_norms(features)
    if score == "lda":  # the margin in the whitened space, re-estimated on its selection (module discriminant)
        return discriminant_select(features, labels, num_classes, ref_mask=ref_mask, refine=lda_refine,
                                   decision=lda_decision, fit=fit, threshold=threshold, max_iter=max_iter, tol=tol,
                                   reg_covar=reg_covar)

    if eigvecs is not None:
        vectors = eigvecs.to(device=features.device, dtype=torch.float64)
    elif vector == "eigen":
        vectors = class_top_eigenvectors(features, labels, num_classes, ref_mask)
    else:
        sums, _ = class_sums(features, labels, num_classes, ref_mask)
        vectors = sums / sums.norm(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)
    scores = alignment_scores(features, labels, vectors, score=score, normalize=normalize, norms=norms)

    ref_counts = None if ref_mask is None else torch.bincount(labels[ref_mask], minlength=num_classes)
    sel = split_validated(scores, labels, num_classes, ref_counts, fit, threshold,
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
    check_fine_options(fit, threshold, score=score, vector=vector, normalize=normalize)
    if score == "lda":
        raise ValueError("score='lda' is not available across processes yet; select on one process")
    features, labels = check_inputs(features_local, labels_local, num_classes)
    n_local, device = features.shape[0], features.device
    ref_mask = check_mask(ref_mask_local, n_local, device, "ref_mask_local")
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
        return empty_selection(device)

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
        sel = split_validated(scores, labels, num_classes, ref_counts, fit, threshold,
                            {"max_iter": max_iter, "tol": tol, "reg_covar": reg_covar}, score == "margin")
    sel.eigvecs = vectors.to(torch.float32)
    return sel



def _check(options: dict) -> None:
    """Refuse a beta mixture on margins (margin lies in [-1, 1], lda is unbounded)."""
    if options["fit"] == "bmm" and options["score"] in ("margin", "lda"):
        raise ValueError(f"--fit bmm needs scores in [0, 1] but --score {options['score']} gives margins; add "
                         f"--score abs (or use --fit gmm)")


def _keywords(options: dict) -> dict:
    """:func:`fine_select`'s keyword arguments from the registry's options."""
    return dict(fit=options["fit"], threshold=options["p_threshold"], score=options["score"],
                vector=options["vector"], max_iter=options["gmm_max_iter"])


def _select(inputs: Inputs, options: dict, state: dict) -> Selection:
    return fine_select(inputs.features, inputs.labels, inputs.num_classes, ref_mask=inputs.ref_mask,
                       lda_refine=options["lda_refine"], lda_decision=options["lda_decision"], **_keywords(options))


def _select_sharded(inputs: Inputs, options: dict, state: dict, positions: torch.Tensor,
                    num_samples: int) -> Selection:
    if options["score"] == "lda":  # no sharded discriminant yet: every process selects on the gathered rows
        return _select(_gathered(inputs, positions, num_samples, inputs.features.device), options, state)
    return fine_select_distributed(inputs.features, inputs.labels, positions, num_samples, inputs.num_classes,
                                   ref_mask_local=inputs.ref_mask, **_keywords(options))


register(SelectorSpec(
    name="fine", label="FINE", needs=("features",), select=_select, select_sharded=_select_sharded, check=_check,
    help="fine (FINE, Kim et al. 2021: eigenvector alignment of penultimate features)",
    options=(
        P_THRESHOLD,
        Option("fit", str, "gmm", choices=FITS,
               help="FINE: per-class 2-component model fitted on the scores: gmm (Gaussian mixture, as published), "
                    "kmeans (2-means, hard split; FINE_official's KMeans variant), bmm (a beta mixture fitted by EM "
                    "with a convergence test and split at --p_threshold; not a port of FINE_official's, whose split "
                    "bound mixes normalised and raw scores)"),
        Option("score", str, "abs", choices=SCORES,
               help="FINE score: abs = |<u, z/|z|>| as the published code, squared = the paper's squared alignment, "
                    "margin = abs minus the sample's best abs against another class's direction, a class split only "
                    "when part of it lies closer to another class, lda = the margin of the linear discriminant "
                    "(whitened by the pooled within-class covariance, re-estimated once on its selection, clean when "
                    ">= 0; --fit and --p_threshold unused) (default per recipe: abs on the paper's datasets, lda on "
                    ".npz tables and in engine.detect, margin on digits, Fashion-MNIST, images and signals)"),
        Option("vector", str, "eigen", choices=VECTORS,
               help="FINE class direction: top eigenvector of the class's gram matrix (published), or the normalised "
                    "class mean (as FINE_official's unused eigen=False path, which no published run takes)"),
        Option("gmm_max_iter", int, 100, valid=lambda v: v >= 1, requirement="must be at least 1",
               help="FINE: EM iterations of each class's mixture (default per recipe: 100, as FINE_official's "
                    "selection/gmm.py:30; 10 in F-DivideMix, as its dividemix/Train_cifar.py:320)"),
        Option("lda_refine", int, 1, valid=lambda v: v >= 0, requirement="must be at least 0",
               help="FINE with --score lda: how often the discriminant is re-estimated on the samples it keeps "
                    "(1; 0 = the reference samples' discriminant only)"),
        Option("lda_decision", str, "sign", choices=DECISIONS,
               help="FINE with --score lda: sign = clean when the margin is >= 0 (no other class's discriminant "
                    "beats the label's), mixture = FINE's per-class split of the margins (--fit, --p_threshold)"),
    )))
