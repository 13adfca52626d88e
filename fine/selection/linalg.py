"""Per-class linear algebra of FINE: class rows, uncentred grams and sums, top eigenvectors by Lanczos."""
from __future__ import annotations

from collections.abc import Iterator

import torch

from fine.selection.checks import check_inputs, check_mask

SCORE_CHUNK = 16384  # rows per block when scoring or summing: bounds the (rows, C) temporary


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
    features, labels = check_inputs(features, labels, num_classes)
    mask = check_mask(mask, features.shape[0], features.device, "mask")
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
    features, labels = check_inputs(features, labels, num_classes)
    mask = check_mask(mask, features.shape[0], features.device, "mask")
    sums = torch.zeros(num_classes, features.shape[1], dtype=torch.float64, device=features.device)
    for start in range(0, features.shape[0], SCORE_CHUNK):
        block = slice(start, start + SCORE_CHUNK)
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
    features, labels = check_inputs(features, labels, num_classes)
    mask = check_mask(mask, features.shape[0], features.device, "mask")
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

