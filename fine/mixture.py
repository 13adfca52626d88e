"""Two-component 1-D mixtures fitted for many groups at once (one group per class), in torch.

Groups are stored as a padded ``(G, n)`` tensor with a boolean validity mask (:func:`pad_groups` builds both from
flat values and group ids). Every fit runs batched over the groups in float64 and lets each group stop on its own
convergence, so the result is what ``G`` separate fits would give:

- :func:`fit_gmm` reproduces scikit-learn's ``GaussianMixture(n_components=2, init_params="kmeans")``: responsibilities
  initialised from a 2-means clustering, ``reg_covar`` added to every variance, E-step then M-step, converged when the
  mean log-likelihood changes by less than ``tol``, and a final E-step giving the posteriors.
- :func:`fit_kmeans` is the exact 2-means clustering (hard posteriors).
- :func:`fit_bmm` is a beta mixture fitted by EM with a weighted method-of-moments M-step.

Components are returned sorted by mean: column 0 is the lower-mean component, column 1 the higher-mean one, and
``posterior`` is the posterior of the higher-mean component.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

_EPS64 = torch.finfo(torch.float64).eps
_LOG_2PI = math.log(2.0 * math.pi)


@dataclass
class MixtureFit:
    """Fitted 2-component mixtures of ``G`` groups (all tensors float64 unless stated, on the input's device).

    Attributes
    ----------
    posterior : (G, n) posterior of the higher-mean component for each padded entry (0 at padding). Degenerate
        groups (fewer than 2 values, or all values equal) get posterior 1 for every valid entry.
    means, variances, weights : (G, 2) component parameters, column 0 = lower mean, column 1 = higher mean.
        Degenerate groups: both means equal the group mean, both variances its variance (plus ``reg_covar`` for
        the GMM), weights (0, 1).
    n_iter : (G,) int64 EM iterations run, or None for 2-means (exact, no iterations).
    converged : (G,) bool, or None for 2-means.
    lower_bound : (G,) mean log-likelihood at the last iteration (scikit-learn's ``lower_bound_``), or None.
    degenerate : (G,) bool, groups that could not be split (fewer than 2 values, or zero variance).
    """

    posterior: torch.Tensor
    means: torch.Tensor
    variances: torch.Tensor
    weights: torch.Tensor
    n_iter: torch.Tensor | None
    converged: torch.Tensor | None
    lower_bound: torch.Tensor | None
    degenerate: torch.Tensor


def pad_groups(values: torch.Tensor, groups: torch.Tensor,
               num_groups: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Lay flat values out as a padded ``(G, n_max)`` tensor, one row per group, in the original order.

    Parameters
    ----------
    values : (N,) float tensor
    groups : (N,) int64 tensor of group ids in ``[0, num_groups)``
    num_groups : G

    Returns
    -------
    padded : (G, n_max) float64, 0 at padding
    mask : (G, n_max) bool, True at valid entries
    cols : (N,) int64, column of each value in its row, so ``padded[groups, cols] == values``
    """
    n = values.shape[0]
    counts = torch.bincount(groups, minlength=num_groups)
    order = torch.argsort(groups, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    cols = torch.empty_like(groups)
    cols[order] = torch.arange(n, device=groups.device) - starts[groups[order]]
    n_max = int(counts.max()) if num_groups else 0
    padded = torch.zeros(num_groups, n_max, dtype=torch.float64, device=values.device)
    mask = torch.zeros(num_groups, n_max, dtype=torch.bool, device=values.device)
    padded[groups, cols] = values.to(torch.float64)
    mask[groups, cols] = True
    return padded, mask, cols


def two_means_split(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Exact 2-means clustering of each group's valid values.

    In 1-D the optimal 2-means partition is contiguous in sorted order, so it is found by scanning every split
    point with cumulative sums: with values centred on the group mean and ``S_s`` the sum of the ``s`` smallest,
    the split maximising ``S_s^2 * n / (s (n - s))`` minimises the within-cluster sum of squares. The optimum is a
    fixed point of Lloyd's algorithm, so no refinement is needed. Deterministic.

    Parameters
    ----------
    values : (G, n) float tensor, padded
    mask : (G, n) bool, valid entries

    Returns
    -------
    upper : (G, n) bool, True for valid entries in the higher-mean cluster. Groups with fewer than 2 distinct
        values put every entry in the lower cluster.
    """
    x = values.to(torch.float64)
    count = mask.sum(1, keepdim=True)
    mean = torch.where(mask, x, 0.0).sum(1, keepdim=True) / count.clamp_min(1)
    centred = torch.where(mask, x - mean, math.inf)
    sorted_x, _ = torch.sort(centred, dim=1)
    prefix = torch.cumsum(torch.where(torch.isinf(sorted_x), 0.0, sorted_x), dim=1)
    s = torch.arange(1, x.shape[1] + 1, device=x.device, dtype=torch.float64)
    n = count.to(torch.float64)
    gain = prefix.square() * n / (s * (n - s))
    # s must leave both clusters non-empty and may not cut between equal values
    tail = torch.cat([sorted_x[:, 1:], torch.full_like(sorted_x[:, :1], math.inf)], dim=1)
    gain = torch.where((s < n) & (tail > sorted_x), gain, -math.inf)
    best = gain.argmax(dim=1, keepdim=True)
    threshold = sorted_x.gather(1, best)
    splittable = torch.isfinite(gain.gather(1, best))
    return mask & splittable & (centred > threshold)


def _degenerate(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(G,) bool: groups with fewer than 2 valid values or with all valid values equal."""
    hi = torch.where(mask, values, -math.inf).amax(1)
    lo = torch.where(mask, values, math.inf).amin(1)
    return (mask.sum(1) < 2) | ~(hi > lo)


def _weighted_moments(x: torch.Tensor, resp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """scikit-learn's ``_estimate_gaussian_parameters`` in 1-D, batched: resp (G, 2, n) -> nk, means, variances,
    each (G, 2)."""
    nk = resp.sum(-1) + 10 * _EPS64
    means = (resp * x).sum(-1) / nk
    variances = (resp * (x - means.unsqueeze(-1)).square()).sum(-1) / nk
    return nk, means, variances


def _log_gauss(x: torch.Tensor, means: torch.Tensor, variances: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(G, 2, n) weighted component log-densities of x (G, 1, n) under (G, 2) parameters."""
    mu, var = means.unsqueeze(-1), variances.unsqueeze(-1)
    return -0.5 * (_LOG_2PI + var.log() + (x - mu).square() / var) + weights.log().unsqueeze(-1)


def _log_beta(x: torch.Tensor, means: torch.Tensor, variances: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(G, 2, n) weighted component log-densities of x (G, 1, n) under beta laws with the given (G, 2) moments."""
    a, b = _beta_shape(means, variances)
    a, b = a.unsqueeze(-1), b.unsqueeze(-1)
    log_norm = torch.lgamma(a + b) - torch.lgamma(a) - torch.lgamma(b)
    return (a - 1) * x.log() + (b - 1) * torch.log1p(-x) + log_norm + weights.log().unsqueeze(-1)


def _beta_shape(means: torch.Tensor, variances: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Method-of-moments beta parameters (alpha, beta) from means and variances (variance < m (1 - m))."""
    common = means * (1 - means) / variances - 1
    return means * common, (1 - means) * common


def _clamp_beta_moments(means: torch.Tensor, variances: torch.Tensor, eps: float,
                        reg: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep beta moments valid: eps <= mean <= 1 - eps and reg <= variance < mean (1 - mean)."""
    means = means.clamp(eps, 1 - eps)
    variances = torch.minimum(variances.clamp_min(reg), means * (1 - means) * (1 - 1e-6))
    return means, variances


def _em(x: torch.Tensor, mask: torch.Tensor, init_upper: torch.Tensor, *, log_density: Callable[..., torch.Tensor],
        m_step: Callable[..., tuple[torch.Tensor, torch.Tensor]], max_iter: int,
        tol: float) -> tuple[torch.Tensor, ...]:
    """Batched EM with per-group stopping, following scikit-learn's ``BaseMixture.fit_predict``.

    Starts from the hard responsibilities ``init_upper`` (G, n). ``log_density(x, means, variances, weights)`` gives
    the (G, 2, n) weighted component log-densities; ``m_step(means, variances)`` turns weighted moments into valid
    parameters. A group that has converged keeps its parameters while the others iterate. Returns means, variances,
    weights, the final E-step's log-responsibilities, n_iter, converged, lower_bound.
    """
    valid = mask.unsqueeze(1).to(torch.float64)  # (G, 1, n)
    x3 = torch.where(mask, x, 0.5).unsqueeze(1)  # padding at 0.5 keeps beta log-densities finite
    n = mask.sum(1).to(torch.float64)  # (G,)
    resp = torch.stack([~init_upper, init_upper], dim=1).to(torch.float64) * valid
    nk, means, variances = _weighted_moments(x3, resp)
    means, variances = m_step(means, variances)
    weights = nk / n.clamp_min(1).unsqueeze(-1)
    groups = x.shape[0]
    n_iter = torch.zeros(groups, dtype=torch.int64, device=x.device)
    converged = torch.zeros(groups, dtype=torch.bool, device=x.device)
    lower_bound = torch.full((groups,), -math.inf, dtype=torch.float64, device=x.device)
    for _ in range(max_iter):
        active = ~converged
        if not bool(active.any()):
            break
        log_prob = log_density(x3, means, variances, weights)
        log_norm = torch.logsumexp(log_prob, dim=1, keepdim=True)
        resp = (log_prob - log_norm).exp() * valid
        new_bound = (log_norm.squeeze(1) * mask).sum(1) / n.clamp_min(1)
        nk, new_means, new_vars = _weighted_moments(x3, resp)
        new_means, new_vars = m_step(new_means, new_vars)
        new_weights = nk / nk.sum(-1, keepdim=True)
        keep = active.unsqueeze(-1)
        means = torch.where(keep, new_means, means)
        variances = torch.where(keep, new_vars, variances)
        weights = torch.where(keep, new_weights, weights)
        converged = converged | (active & ((new_bound - lower_bound).abs() < tol))
        lower_bound = torch.where(active, new_bound, lower_bound)
        n_iter = n_iter + active.to(torch.int64)
    log_prob = log_density(x3, means, variances, weights)
    log_resp = log_prob - torch.logsumexp(log_prob, dim=1, keepdim=True)
    return means, variances, weights, log_resp, n_iter, converged, lower_bound


def _finish(posterior_comp: torch.Tensor, means: torch.Tensor, variances: torch.Tensor, weights: torch.Tensor,
            mask: torch.Tensor, degenerate: torch.Tensor, n_iter: torch.Tensor | None,
            converged: torch.Tensor | None, lower_bound: torch.Tensor | None,
            flat_stats: tuple[torch.Tensor, torch.Tensor]) -> MixtureFit:
    """Sort components by mean, take the higher one's posterior from the (G, 2, n) per-component posteriors, and give
    degenerate groups their fixed values (``flat_stats``: each group's mean and variance)."""
    swap = means[:, 0] > means[:, 1]
    order = torch.stack([swap.long(), (~swap).long()], dim=1)
    means, variances, weights = (t.gather(1, order) for t in (means, variances, weights))
    posterior = torch.where(swap.unsqueeze(-1), posterior_comp[:, 0], posterior_comp[:, 1])
    group_mean, group_var = flat_stats
    deg = degenerate.unsqueeze(-1)
    means = torch.where(deg, group_mean.unsqueeze(-1).expand(-1, 2), means)
    variances = torch.where(deg, group_var.unsqueeze(-1).expand(-1, 2), variances)
    weights = torch.where(deg, torch.tensor([0.0, 1.0], dtype=torch.float64, device=means.device), weights)
    posterior = torch.where(deg, 1.0, posterior) * mask
    return MixtureFit(posterior=posterior, means=means, variances=variances, weights=weights, n_iter=n_iter,
                      converged=converged, lower_bound=lower_bound, degenerate=degenerate)


def _group_stats(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(G,) mean and population variance of each group's valid values (0 for empty groups)."""
    n = mask.sum(1).clamp_min(1)
    mean = torch.where(mask, x, 0.0).sum(1) / n
    var = torch.where(mask, (x - mean.unsqueeze(-1)).square(), 0.0).sum(1) / n
    return mean, var


def _check(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Validate padded values and mask; returns the values as float64."""
    if values.dim() != 2 or mask.shape != values.shape or mask.dtype != torch.bool:
        raise ValueError(f"expected values (G, n) and a bool mask of the same shape, got {tuple(values.shape)} "
                         f"and {tuple(mask.shape)} {mask.dtype}")
    x = values.to(torch.float64)
    if not bool(torch.isfinite(torch.where(mask, x, 0.0)).all()):
        raise ValueError("mixture values contain NaN or Inf; pass finite values")
    return x


def fit_gmm(values: torch.Tensor, mask: torch.Tensor, *, max_iter: int = 100, tol: float = 1e-6,
            reg_covar: float = 1e-6) -> MixtureFit:
    """Fit a 2-component Gaussian mixture to every group, as separate scikit-learn fits would.

    Matches ``GaussianMixture(n_components=2, covariance_type="full", init_params="kmeans", tol=tol,
    max_iter=max_iter, reg_covar=reg_covar)``, except that the 2-means initialisation is the exact optimum
    (:func:`two_means_split`) instead of a seeded k-means++ run, which makes the fit deterministic.

    Parameters
    ----------
    values : (G, n) float tensor, padded; mask : (G, n) bool, valid entries
    max_iter, tol, reg_covar : as in scikit-learn; each group stops when its mean log-likelihood changes by less
        than ``tol``.

    Returns
    -------
    MixtureFit
    """
    x = _check(values, mask)
    upper = two_means_split(x, mask)

    def m_step(means: torch.Tensor, variances: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return means, variances + reg_covar

    means, variances, weights, log_resp, n_iter, converged, bound = _em(
        x, mask, upper, log_density=_log_gauss, m_step=m_step, max_iter=max_iter, tol=tol)
    mean, var = _group_stats(x, mask)
    return _finish(log_resp.exp(), means, variances, weights, mask, _degenerate(x, mask), n_iter, converged, bound,
                   (mean, var + reg_covar))


_ROUNDING = 1e-4  # how far past [0, 1] float32 rounding may carry a beta mixture's values (scores are cosines)


def fit_bmm(values: torch.Tensor, mask: torch.Tensor, *, max_iter: int = 100, tol: float = 1e-6,
            eps: float = 1e-4, reg_covar: float = 1e-6) -> MixtureFit:
    """Fit a 2-component beta mixture to every group by EM with a weighted method-of-moments M-step.

    Values are clipped into ``[eps, 1 - eps]`` (values outside [0, 1] by more than float32 rounding, 1e-4, are
    refused). Initialised from the exact 2-means split like :func:`fit_gmm`;
    each M-step sets every component's mean and variance to its responsibility-weighted moments (variance floored
    at ``reg_covar`` and kept below ``m (1 - m)``) and solves for the beta shape parameters; each group stops when
    its mean log-likelihood changes by less than ``tol``. ``means``/``variances`` are the components' moments.

    Parameters
    ----------
    values : (G, n) float tensor in [0, 1], padded; mask : (G, n) bool, valid entries

    Returns
    -------
    MixtureFit
    """
    x = _check(values, mask)
    if bool(((x < -_ROUNDING) | (x > 1 + _ROUNDING))[mask].any()):  # a cosine of float32 unit vectors may pass 1
        raise ValueError("the beta mixture needs values in [0, 1]; rescale them or use the gmm fit")
    x = torch.where(mask, x.clamp(eps, 1 - eps), x)
    upper = two_means_split(x, mask)

    def m_step(means: torch.Tensor, variances: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return _clamp_beta_moments(means, variances, eps, reg_covar)

    means, variances, weights, log_resp, n_iter, converged, bound = _em(
        x, mask, upper, log_density=_log_beta, m_step=m_step, max_iter=max_iter, tol=tol)
    return _finish(log_resp.exp(), means, variances, weights, mask, _degenerate(x, mask), n_iter, converged, bound,
                   _group_stats(x, mask))


def fit_kmeans(values: torch.Tensor, mask: torch.Tensor) -> MixtureFit:
    """Exact 2-means clustering of every group as a :class:`MixtureFit` with hard (0/1) posteriors.

    ``means`` are the cluster centres, ``variances`` the within-cluster population variances, ``weights`` the
    cluster fractions; ``n_iter``, ``converged`` and ``lower_bound`` are None.
    """
    x = _check(values, mask)
    upper = two_means_split(x, mask)
    resp = torch.stack([mask & ~upper, upper], dim=1).to(torch.float64)
    count = resp.sum(-1)
    means = (resp * x.unsqueeze(1)).sum(-1) / count.clamp_min(1)
    variances = (resp * (x.unsqueeze(1) - means.unsqueeze(-1)).square()).sum(-1) / count.clamp_min(1)
    weights = count / count.sum(-1, keepdim=True).clamp_min(1)
    return _finish(resp, means, variances, weights, mask, _degenerate(x, mask), None, None, None,
                   _group_stats(x, mask))


FITS = ("gmm", "kmeans", "bmm")


def fit_mixture(kind: str, values: torch.Tensor, mask: torch.Tensor, **options: float) -> MixtureFit:
    """Dispatch to :func:`fit_gmm`, :func:`fit_kmeans` or :func:`fit_bmm` by name (``kind`` in :data:`FITS`)."""
    if kind == "gmm":
        return fit_gmm(values, mask, **options)
    if kind == "bmm":
        return fit_bmm(values, mask, **options)
    if kind == "kmeans":
        return fit_kmeans(values, mask)
    raise ValueError(f"unknown mixture fit {kind!r}; choose one of {', '.join(FITS)}")
