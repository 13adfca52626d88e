"""Batched 1-D two-component mixtures against scikit-learn and plain numpy references."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits
from sklearn.cluster import KMeans
from sklearn.mixture import GaussianMixture

from fine.mixture import fit_bmm, fit_gmm, fit_kmeans, fit_mixture, pad_groups, two_means_split

# (n, mean0, mean1, std0, std1, weight of component 0): different sizes and overlaps in one batch
GAUSSIAN_GROUPS = [(7, 0, 1, .3, .3, .5), (40, 0, 4, .7, .7, .3), (300, .2, .5, .1, .1, .7), (2000, 0, 1, .5, .5, .5),
                   (120, .9, .1, .05, .2, .2), (3, 0, 5, .1, .1, .5)]


@pytest.fixture(autouse=True)
def single_threaded_sklearn():
    """scikit-learn's k-means spins OpenMP threads; on a busy 2-core machine one thread is many times faster."""
    with threadpool_limits(limits=1):
        yield


def make_groups(rng: np.random.Generator, specs: list[tuple]) -> list[np.ndarray]:
    groups = []
    for n, m0, m1, s0, s1, w in specs:
        first = rng.random(n) < w
        groups.append(np.where(first, rng.normal(m0, s0, n), rng.normal(m1, s1, n)))
    return groups


def to_padded(groups: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    values = np.concatenate(groups)
    ids = np.repeat(np.arange(len(groups)), [len(g) for g in groups])
    perm = np.random.default_rng(1).permutation(len(values))  # groups interleaved, as classes are in a dataset
    padded, mask, cols = pad_groups(torch.from_numpy(values[perm]), torch.from_numpy(ids[perm]), len(groups))
    return padded, mask


def sklearn_gmm(x: np.ndarray, *, seed: int = 0, **options: float) -> dict:
    """Plain reference: one scikit-learn fit, components sorted by mean."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm = GaussianMixture(n_components=2, covariance_type="full", random_state=seed, **options).fit(x[:, None])
    order = np.argsort(gm.means_[:, 0])
    return {"means": gm.means_[order, 0], "variances": gm.covariances_[order, 0, 0], "weights": gm.weights_[order],
            "n_iter": gm.n_iter_, "converged": gm.converged_, "lower_bound": gm.lower_bound_,
            "posterior": gm.predict_proba(x[:, None])[:, order[1]]}


def test_pad_groups_round_trip() -> None:
    values = torch.tensor([5.0, 1.0, 2.0, 7.0, 3.0])
    groups = torch.tensor([2, 0, 2, 0, 2])
    padded, mask, cols = pad_groups(values, groups, 4)
    assert padded.shape == (4, 3) and padded.dtype == torch.float64
    assert torch.equal(padded[groups, cols], values.double())
    assert mask.sum(1).tolist() == [2, 0, 3, 0]
    assert padded[0, :2].tolist() == [1.0, 7.0] and padded[2].tolist() == [5.0, 2.0, 3.0]  # original order kept


def test_two_means_split_is_the_optimal_partition() -> None:
    rng = np.random.default_rng(0)
    groups = make_groups(rng, GAUSSIAN_GROUPS) + [rng.normal(size=50), np.r_[rng.normal(0, 1, 30), 8.0]]
    padded, mask = to_padded(groups)
    upper = two_means_split(padded, mask)
    for i, g in enumerate(groups):
        x = padded[i][mask[i]].numpy()
        up = upper[i][mask[i]].numpy()
        xs = np.sort(x)
        sse = [xs[:s].var() * s + xs[s:].var() * (len(xs) - s) for s in range(1, len(xs))]  # every split point
        ours = x[up].var() * up.sum() + x[~up].var() * (~up).sum()
        assert ours == pytest.approx(min(sse), rel=1e-9, abs=1e-12)
        assert x[up].min() > x[~up].max()  # a threshold split, upper cluster = higher values


def test_gmm_matches_separate_sklearn_fits() -> None:
    groups = make_groups(np.random.default_rng(0), GAUSSIAN_GROUPS)
    padded, mask = to_padded(groups)
    upper = two_means_split(padded, mask)
    for i in range(len(groups)):  # precondition: sklearn's seeded k-means start is the exact 2-means split here
        x = padded[i][mask[i]].numpy()
        km = KMeans(n_clusters=2, n_init=1, random_state=0).fit(x[:, None])
        assert np.array_equal(km.labels_ == np.argmax(km.cluster_centers_[:, 0]), upper[i][mask[i]].numpy())
    for max_iter in (100, 3):
        fit = fit_gmm(padded, mask, max_iter=max_iter, tol=1e-6, reg_covar=1e-6)
        n_iters = []
        for i in range(len(groups)):
            x = padded[i][mask[i]].numpy()
            ref = sklearn_gmm(x, tol=1e-6, max_iter=max_iter, reg_covar=1e-6)
            np.testing.assert_allclose(fit.means[i].numpy(), ref["means"], rtol=1e-7, atol=1e-9)
            np.testing.assert_allclose(fit.variances[i].numpy(), ref["variances"], rtol=1e-7, atol=1e-12)
            np.testing.assert_allclose(fit.weights[i].numpy(), ref["weights"], rtol=1e-7, atol=1e-12)
            np.testing.assert_allclose(fit.posterior[i][mask[i]].numpy(), ref["posterior"], atol=1e-8)
            assert fit.lower_bound[i].item() == pytest.approx(ref["lower_bound"], rel=1e-10, abs=1e-12)
            assert fit.n_iter[i].item() == ref["n_iter"]
            assert bool(fit.converged[i]) == ref["converged"]
            n_iters.append(ref["n_iter"])
        assert len(set(n_iters)) > (1 if max_iter == 100 else 0)  # groups stopped at different iterations
        assert torch.equal(fit.posterior[~mask], torch.zeros(int((~mask).sum()), dtype=torch.float64))


def test_gmm_on_overlapping_data_is_within_sklearn_seed_variation() -> None:
    """Where k-means++ can land elsewhere, the exact 2-means start differs from sklearn's; the fit must still be as
    close to sklearn's as sklearn's fits with two seeds are to each other (plus float noise)."""
    rng = np.random.default_rng(3)
    groups = make_groups(rng, [(5000, .1, .6, .1, .2, .2), (900, 0, .5, .3, .3, .5), (1500, 0, 1, 1, 1, .5)])
    padded, mask = to_padded(groups)
    fit = fit_gmm(padded, mask)
    for i in range(len(groups)):
        x = padded[i][mask[i]].numpy()
        refs = [sklearn_gmm(x, seed=s, tol=1e-6, max_iter=100, reg_covar=1e-6) for s in (0, 1, 2)]
        spread = max(np.abs(a["posterior"] - b["posterior"]).max() for a in refs for b in refs)
        ours = min(np.abs(fit.posterior[i][mask[i]].numpy() - r["posterior"]).max() for r in refs)
        assert ours <= spread + 0.02
        assert (fit.posterior[i][mask[i]].numpy() > 0.5).mean() == pytest.approx(
            (refs[0]["posterior"] > 0.5).mean(), abs=0.02)


def test_degenerate_groups_are_flagged_not_nan() -> None:
    padded = torch.tensor([[0.3, 0.3, 0.3], [0.7, 0.0, 0.0], [0.0, 0.0, 0.0], [0.1, 0.9, 0.2]], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1], [1, 0, 0], [0, 0, 0], [1, 1, 1]], dtype=torch.bool)
    for kind in ("gmm", "kmeans", "bmm"):
        fit = fit_mixture(kind, padded, mask)
        assert fit.degenerate.tolist() == [True, True, True, False]
        for t in (fit.posterior, fit.means, fit.variances, fit.weights):
            assert torch.isfinite(t).all()
        assert fit.posterior[:2][mask[:2]].eq(1).all() and fit.posterior[~mask].eq(0).all()
        assert fit.means[0].tolist() == pytest.approx([0.3, 0.3])
    fit = fit_gmm(padded, mask)
    assert fit.posterior[3].tolist() == pytest.approx([0.0, 1.0, 0.0], abs=1e-6)


def test_kmeans_fit_matches_sklearn_kmeans() -> None:
    groups = make_groups(np.random.default_rng(0), GAUSSIAN_GROUPS)
    padded, mask = to_padded(groups)
    fit = fit_kmeans(padded, mask)
    assert fit.n_iter is None and fit.converged is None
    for i in range(len(groups)):
        x = padded[i][mask[i]].numpy()
        km = KMeans(n_clusters=2, n_init=1, tol=0.0, random_state=0).fit(x[:, None])
        centres = np.sort(km.cluster_centers_[:, 0])
        np.testing.assert_allclose(fit.means[i].numpy(), centres, rtol=1e-6, atol=1e-9)
        upper = km.labels_ == np.argmax(km.cluster_centers_[:, 0])
        assert np.array_equal(fit.posterior[i][mask[i]].numpy() == 1.0, upper)
        assert fit.weights[i, 1].item() == pytest.approx(upper.mean())
        assert fit.variances[i, 1].item() == pytest.approx(x[upper].var())


def numpy_bmm(x: np.ndarray, upper: np.ndarray, *, max_iter: int, tol: float, eps: float, reg: float) -> dict:
    """Plain reference: beta-mixture EM with a weighted method-of-moments M-step on one group."""
    from scipy.stats import beta as beta_law
    x = np.clip(x, eps, 1 - eps)
    resp = np.stack([~upper, upper], 1).astype(float)

    def moments(resp: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        nk = resp.sum(0) + 10 * np.finfo(float).eps
        m = (resp * x[:, None]).sum(0) / nk
        v = (resp * (x[:, None] - m) ** 2).sum(0) / nk
        m = np.clip(m, eps, 1 - eps)
        v = np.minimum(np.maximum(v, reg), m * (1 - m) * (1 - 1e-6))
        return nk, m, v

    def log_dens(m: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
        c = m * (1 - m) / v - 1
        return np.stack([beta_law.logpdf(x, m[j] * c[j], (1 - m[j]) * c[j]) + np.log(w[j]) for j in (0, 1)], 1)

    nk, m, v = moments(resp)
    w = nk / len(x)
    bound, n_iter, converged = -np.inf, 0, False
    for n_iter in range(1, max_iter + 1):
        lp = log_dens(m, v, w)
        norm = np.logaddexp(lp[:, 0], lp[:, 1])
        nk, m, v = moments(np.exp(lp - norm[:, None]))
        w = nk / nk.sum()
        prev, bound = bound, norm.mean()
        if abs(bound - prev) < tol:
            converged = True
            break
    lp = log_dens(m, v, w)
    return {"means": m, "variances": v, "weights": w, "n_iter": n_iter, "converged": converged,
            "posterior": np.exp(lp[:, 1] - np.logaddexp(lp[:, 0], lp[:, 1]))}


def test_bmm_matches_numpy_reference_and_recovers_components() -> None:
    rng = np.random.default_rng(7)
    specs = [(3000, (2, 8), (8, 2), 0.3), (500, (1.5, 5), (6, 3), 0.6), (60, (3, 9), (9, 3), 0.5)]
    groups = []
    for n, a, b, w in specs:
        low = rng.random(n) < w
        groups.append(np.where(low, rng.beta(*a, n), rng.beta(*b, n)))
    padded, mask = to_padded(groups)
    fit = fit_bmm(padded, mask, max_iter=100, tol=1e-6, eps=1e-4, reg_covar=1e-6)
    upper = two_means_split(padded, mask)
    for i, (n, a, b, w) in enumerate(specs):
        x = padded[i][mask[i]].numpy()
        ref = numpy_bmm(x, upper[i][mask[i]].numpy(), max_iter=100, tol=1e-6, eps=1e-4, reg=1e-6)
        np.testing.assert_allclose(fit.means[i].numpy(), ref["means"], rtol=1e-6)
        np.testing.assert_allclose(fit.variances[i].numpy(), ref["variances"], rtol=1e-6)
        np.testing.assert_allclose(fit.weights[i].numpy(), ref["weights"], rtol=1e-6)
        np.testing.assert_allclose(fit.posterior[i][mask[i]].numpy(), ref["posterior"], atol=1e-6)
        assert fit.n_iter[i].item() == ref["n_iter"] and bool(fit.converged[i]) == ref["converged"]
        if i == 0:  # well separated and large: the known answer
            assert fit.means[i].numpy() == pytest.approx([a[0] / sum(a), b[0] / sum(b)], abs=0.03)
            assert fit.weights[i, 0].item() == pytest.approx(w, abs=0.05)


def test_bmm_rejects_values_outside_unit_interval() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fit_bmm(torch.tensor([[0.2, 1.5]]), torch.ones(1, 2, dtype=torch.bool))


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="NaN"):
        fit_gmm(torch.tensor([[0.1, float("nan")]]), torch.ones(1, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask"):
        fit_gmm(torch.zeros(2, 3), torch.ones(2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="unknown mixture"):
        fit_mixture("em", torch.zeros(1, 2), torch.ones(1, 2, dtype=torch.bool))
    # NaN in padding is ignored
    fit = fit_gmm(torch.tensor([[0.0, 1.0, 0.1, float("nan")]]), torch.tensor([[True, True, True, False]]))
    assert torch.isfinite(fit.posterior).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gmm_on_cuda_matches_cpu() -> None:
    padded, mask = to_padded(make_groups(np.random.default_rng(0), GAUSSIAN_GROUPS))
    cpu = fit_gmm(padded, mask)
    gpu = fit_gmm(padded.cuda(), mask.cuda())
    torch.testing.assert_close(gpu.posterior.cpu(), cpu.posterior, atol=1e-8, rtol=0)
    assert torch.equal(gpu.n_iter.cpu(), cpu.n_iter)
