"""FINE and the baseline selectors against deliberately plain numpy / scikit-learn references."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits
from sklearn import metrics as skm
from sklearn.mixture import GaussianMixture

from fine.selection import (Selection, alignment_scores, class_grams, class_sums, class_top_eigenvectors,
                            eigvecs_from_grams, fine_select, fine_select_distributed, loss_gmm_select,
                            selection_metrics, small_loss_select, split_scores)
from tests.fixtures import synthetic_features as synthetic


@pytest.fixture(autouse=True)
def single_threaded_sklearn():
    """scikit-learn's k-means spins OpenMP threads; on a busy 2-core machine one thread is many times faster."""
    with threadpool_limits(limits=1):
        yield


def reference_select(features: torch.Tensor, labels: torch.Tensor, num_classes: int, *, score: str = "abs",
                     normalize: bool = True, ref_mask: torch.Tensor | None = None, seed: int = 0):
    """The plain published recipe: SVD of each class's feature matrix, scores per class, one sklearn GMM per class."""
    x, y = features.double().numpy(), labels.numpy()
    ref = np.ones(len(y), bool) if ref_mask is None else ref_mask.numpy()
    vecs, scores, clean = np.zeros((num_classes, x.shape[1])), np.zeros(len(y)), np.zeros(len(y), bool)
    for k in range(num_classes):
        xk = x[(y == k) & ref]
        u = np.linalg.svd(xk, full_matrices=False)[2][0]
        vecs[k] = u if u @ xk.sum(0) >= 0 else -u
        z = x[y == k]
        if normalize:
            z = z / np.linalg.norm(z, axis=1, keepdims=True)
        s = np.abs(z @ vecs[k]) if score == "abs" else (z @ vecs[k]) ** 2
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the reference may stop at max_iter, as the selector then does
            gm = GaussianMixture(n_components=2, covariance_type="full", tol=1e-6, max_iter=100, reg_covar=1e-6,
                                 random_state=seed).fit(s[:, None])
        clean[y == k] = gm.predict_proba(s[:, None])[:, np.argmax(gm.means_[:, 0])] > 0.5
        scores[y == k] = s
    return vecs, scores, clean


def f1(mask: np.ndarray, is_clean: np.ndarray) -> float:
    return skm.f1_score(is_clean, mask, zero_division=0)


# (n, d, c, noise, spread, score, normalize, separated)
SETTINGS = [(3000, 64, 10, 0.2, 0.5, "abs", True, True), (3000, 64, 10, 0.6, 1.0, "squared", True, False),
            (1200, 16, 3, 0.5, 1.0, "abs", True, False), (2000, 32, 5, 0.4, 0.4, "squared", False, True),
            (1500, 64, 10, 0.4, 2.0, "abs", True, False), (4000, 128, 4, 0.6, 0.6, "abs", False, True)]


@pytest.mark.parametrize("n,d,c,noise,spread,score,normalize,separated", SETTINGS)
def test_matches_plain_reference(n, d, c, noise, spread, score, normalize, separated) -> None:
    feats, labels, is_clean = synthetic(n, d, c, noise, spread=spread, seed=n + d)
    sel = fine_select(feats, labels, c, score=score, normalize=normalize)
    vecs, scores, ref0 = reference_select(feats, labels, c, score=score, normalize=normalize, seed=0)
    cos = (sel.eigvecs.double().numpy() * vecs).sum(1)
    assert cos.min() >= 0.9999  # same sign convention, so cos, not |cos|
    np.testing.assert_allclose(sel.scores.numpy(), scores, rtol=1e-4, atol=1e-5)
    ours = sel.clean_mask.numpy()
    agree = (ours == ref0).mean()
    if separated:
        assert agree >= 0.99
    else:
        _, _, ref1 = reference_select(feats, labels, c, score=score, normalize=normalize, seed=1)
        assert 1 - agree <= (ref0 != ref1).mean() + 0.01
    assert f1(ours, is_clean.numpy()) >= f1(ref0, is_clean.numpy()) - 0.005


@pytest.mark.parametrize("fit", ["gmm", "kmeans", "bmm"])
@pytest.mark.parametrize("score,vector", [("abs", "eigen"), ("squared", "eigen"), ("abs", "mean")])
def test_well_separated_classes_are_recovered(fit, score, vector) -> None:
    feats, labels, is_clean = synthetic(4000, 64, 8, 0.4, spread=0.4, seed=1)
    sel = fine_select(feats, labels, 8, fit=fit, score=score, vector=vector)
    m = selection_metrics(sel.clean_mask, is_clean)
    assert m["precision"] >= 0.95 and m["recall"] >= 0.95
    assert sel.clean_mask.dtype == torch.bool and sel.clean_prob.dtype == torch.float32
    assert torch.equal(sel.clean_indices(), sel.clean_mask.nonzero().squeeze(1))
    assert (sel.n_iter is None) == (fit == "kmeans")
    assert torch.equal(sel.clean_mask, sel.clean_prob > 0.5)


def test_ref_mask_defines_vectors_and_every_sample_is_scored() -> None:
    feats, labels, is_clean = synthetic(3000, 32, 6, 0.7, spread=1.0, seed=2)
    ref = is_clean & (torch.arange(3000) % 3 == 0)
    sel = fine_select(feats, labels, 6, ref_mask=ref)
    vecs, scores, clean = reference_select(feats, labels, 6, ref_mask=ref)
    assert (sel.eigvecs.double().numpy() * vecs).sum(1).min() >= 0.9999
    np.testing.assert_allclose(sel.scores.numpy(), scores, rtol=1e-4, atol=1e-5)
    assert (sel.clean_mask.numpy() == clean).mean() >= 0.99
    assert sel.clean_mask[~ref].sum() > 0  # samples outside the reference set are selected too
    # a clean reference set beats the whole class at 70% noise
    assert f1(sel.clean_mask.numpy(), is_clean.numpy()) > f1(fine_select(feats, labels, 6).clean_mask.numpy(),
                                                              is_clean.numpy())


def test_grams_path_and_precomputed_eigvecs() -> None:
    feats, labels, _ = synthetic(2000, 48, 5, 0.5, spread=1.0, seed=3)
    ref = torch.arange(2000) % 2 == 0
    grams, sums, counts = class_grams(feats, labels, 5, ref)
    x, y, r = feats.double().numpy(), labels.numpy(), ref.numpy()
    for k in range(5):
        xk = x[(y == k) & r]
        np.testing.assert_allclose(grams[k].numpy(), xk.T @ xk, rtol=1e-5, atol=1e-3)
        np.testing.assert_allclose(sums[k].numpy(), xk.sum(0), rtol=1e-5, atol=1e-4)
        assert counts[k] == len(xk)
    np.testing.assert_allclose(class_sums(feats, labels, 5, ref)[0].numpy(), sums.numpy(), rtol=1e-5, atol=1e-4)
    from_grams = eigvecs_from_grams(grams, sums)
    lanczos = class_top_eigenvectors(feats, labels, 5, ref)
    assert (from_grams * lanczos).sum(1).min() >= 0.9999
    fallback = class_top_eigenvectors(feats, labels, 5, ref, max_iter=1)  # never converges: eigh fallback
    assert (fallback * lanczos).sum(1).min() >= 0.9999
    direct = fine_select(feats, labels, 5, ref_mask=ref)
    given = fine_select(feats, labels, 5, ref_mask=ref, eigvecs=from_grams)
    assert (direct.clean_mask == given.clean_mask).float().mean() >= 0.999


def test_mean_vector_is_normalised_reference_mean() -> None:
    feats, labels, _ = synthetic(1000, 16, 4, 0.3, spread=1.0, seed=4)
    ref = torch.arange(1000) % 4 != 0
    sel = fine_select(feats, labels, 4, ref_mask=ref, vector="mean")
    for k in range(4):
        m = feats[(labels == k) & ref].double().mean(0)
        np.testing.assert_allclose(sel.eigvecs[k].numpy(), (m / m.norm()).numpy(), atol=1e-6)


def test_deterministic() -> None:
    feats, labels, _ = synthetic(2000, 32, 5, 0.5, spread=1.5, seed=5)
    a, b = fine_select(feats, labels, 5), fine_select(feats.clone(), labels.clone(), 5)
    for field in ("clean_mask", "clean_prob", "scores", "eigvecs", "means", "variances", "weights", "n_iter"):
        assert torch.equal(getattr(a, field), getattr(b, field))


def test_dimension_larger_than_class_size() -> None:
    feats, labels, _ = synthetic(120, 64, 3, 0.3, spread=0.5, seed=6)  # about 40 samples per class, D = 64
    sel = fine_select(feats, labels, 3)
    vecs, scores, clean = reference_select(feats, labels, 3)
    assert (sel.eigvecs.double().numpy() * vecs).sum(1).min() >= 0.9999
    np.testing.assert_allclose(sel.scores.numpy(), scores, rtol=1e-4, atol=1e-5)
    assert (sel.clean_mask.numpy() == clean).mean() >= 0.99


def record(fn, *args, **kwargs) -> tuple[Selection, list]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fn(*args, **kwargs)
    return out, [w for w in caught if issubclass(w.category, UserWarning)]


def test_class_with_fewer_than_two_references_keeps_all() -> None:
    feats, labels, _ = synthetic(1000, 16, 4, 0.4, spread=1.0, seed=7)
    ref = labels != 2
    ref[(labels == 2).nonzero()[0]] = True  # one reference sample in class 2, none in class 3
    ref[labels == 3] = False
    sel, caught = record(fine_select, feats, labels, 4, ref_mask=ref)
    assert len(caught) == 1 and "[2, 3]" in str(caught[0].message)
    kept = (labels == 2) | (labels == 3)
    assert sel.clean_mask[kept].all() and sel.clean_prob[kept].eq(1).all()
    assert sel.eigvecs[3].eq(0).all() and sel.eigvecs[2].norm() == pytest.approx(1.0)
    assert not sel.clean_mask[~kept].all()


def test_zero_variance_scores_keep_class() -> None:
    feats, labels, _ = synthetic(600, 16, 3, 0.4, spread=1.0, seed=8)
    feats[labels == 1] = feats[labels == 1][0]  # identical features: every score of class 1 is 1
    sel, caught = record(fine_select, feats, labels, 3)
    assert len(caught) == 1 and "zero variance" in str(caught[0].message)
    assert sel.clean_mask[labels == 1].all() and sel.clean_prob[labels == 1].eq(1).all()
    assert torch.isfinite(sel.means).all() and torch.isfinite(sel.clean_prob).all()


def test_class_without_samples() -> None:
    feats, labels, _ = synthetic(900, 16, 3, 0.3, spread=1.0, seed=9)
    labels = torch.where(labels == 2, 3, labels)  # class 2 of 4 is empty
    sel, caught = record(fine_select, feats, labels, 4)
    assert not caught
    assert sel.eigvecs[2].eq(0).all() and sel.means.shape == (4, 2) and torch.isfinite(sel.means).all()
    three = fine_select(feats, torch.where(labels == 3, 2, labels), 3)
    assert torch.equal(sel.clean_mask, three.clean_mask)


def test_bad_inputs_raise() -> None:
    feats, labels, _ = synthetic(200, 8, 3, 0.3, spread=1.0)
    for bad in (float("nan"), float("inf")):
        broken = feats.clone()
        broken[5, 3] = bad
        with pytest.raises(ValueError, match="NaN or Inf"):
            fine_select(broken, labels, 3)
    with pytest.raises(ValueError, match="labels must lie"):
        fine_select(feats, labels, 2)
    with pytest.raises(ValueError, match="labels must lie"):
        fine_select(feats, torch.where(labels == 0, -1, labels), 3)
    with pytest.raises(ValueError, match="ref_mask"):
        fine_select(feats, labels, 3, ref_mask=torch.ones(199, dtype=torch.bool))
    with pytest.raises(ValueError, match="ref_mask"):
        fine_select(feats, labels, 3, ref_mask=torch.ones(200))
    with pytest.raises(ValueError, match="eigvecs"):
        fine_select(feats, labels, 3, eigvecs=torch.ones(3, 7))
    with pytest.raises(ValueError, match="labels"):
        fine_select(feats, labels[:-1], 3)
    with pytest.raises(ValueError, match="bmm"):
        fine_select(feats, labels, 3, fit="bmm", normalize=False)
    with pytest.raises(ValueError, match="unknown fit"):
        fine_select(feats, labels, 3, fit="svm")
    empty = fine_select(feats[:0], labels[:0], 3)
    assert empty.clean_mask.shape == (0,) and empty.clean_indices().shape == (0,)


def test_alignment_scores_without_normalisation() -> None:
    feats, labels, _ = synthetic(500, 16, 3, 0.3, spread=1.0)
    vecs = torch.randn(3, 16, generator=torch.Generator().manual_seed(0))
    expected = np.array([feats[i].double() @ vecs[labels[i]].double() for i in range(500)])  # per-sample loop
    np.testing.assert_allclose(alignment_scores(feats, labels, vecs, normalize=False).numpy(), np.abs(expected),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(alignment_scores(feats, labels, vecs, score="squared", normalize=False).numpy(),
                               expected ** 2, rtol=1e-4, atol=1e-5)


def test_margin_scores_match_numpy() -> None:
    feats, labels, _ = synthetic(700, 16, 4, 0.3, spread=1.0, seed=11)
    vecs = torch.randn(4, 16, generator=torch.Generator().manual_seed(1))
    x, y, v = feats.double().numpy(), labels.numpy(), vecs.double().numpy()
    for normalize in (True, False):
        z = x / np.linalg.norm(x, axis=1, keepdims=True) if normalize else x
        cos = np.abs(z @ v.T)  # (N, C)
        own = cos[np.arange(len(y)), y]
        other = np.array([np.delete(row, k).max() for row, k in zip(cos, y)])  # per-sample loop
        got = alignment_scores(feats, labels, vecs, score="margin", normalize=normalize).numpy()
        np.testing.assert_allclose(got, own - other, rtol=1e-4, atol=1e-5)
    one_class = alignment_scores(feats, torch.zeros_like(labels), vecs[:1], score="margin")
    np.testing.assert_allclose(one_class.numpy(), alignment_scores(feats, torch.zeros_like(labels), vecs[:1]).numpy())


def asymmetric_features(seed: int = 0):
    """Post-ReLU-like features of 3 classes sharing a common component; 35% of class 2 is labelled 1 (asymmetric
    noise), so class 1 holds two populations and classes 0 and 2 one each. Returns features, labels, is_clean."""
    rng = np.random.default_rng(seed)
    d = 24
    common = np.abs(rng.normal(size=d)) * 2
    dirs = np.abs(rng.normal(size=(3, d)))
    true = np.repeat([0, 1, 2], [400, 300, 400])
    feats = np.maximum(common + dirs[true] * rng.uniform(0.5, 1.5, (len(true), 1))
                       + 0.6 * rng.normal(size=(len(true), d)), 0)
    labels = true.copy()
    labels[rng.choice(np.flatnonzero(true == 2), 140, replace=False)] = 1
    return torch.from_numpy(feats.astype(np.float32)), torch.from_numpy(labels), torch.from_numpy(labels == true)


def test_margin_keeps_one_population_classes_whole_and_splits_the_other_like_sklearn() -> None:
    feats, labels, is_clean = asymmetric_features()
    sel = fine_select(feats, labels, 3, score="margin")
    # plain reference: eigenvectors by SVD, margins, one scikit-learn GMM per class, split only below zero
    x, y = feats.double().numpy(), labels.numpy()
    z = x / np.linalg.norm(x, axis=1, keepdims=True)
    vecs = np.stack([np.linalg.svd(x[y == k], full_matrices=False)[2][0] for k in range(3)])
    cos = np.abs(z @ vecs.T)
    margin = cos[np.arange(len(y)), y] - np.where(np.eye(3, dtype=bool)[y], -np.inf, cos).max(1)
    np.testing.assert_allclose(sel.scores.numpy(), margin, rtol=1e-4, atol=1e-5)
    expected = np.ones(len(y), bool)
    split = []
    for k in range(3):
        gm = GaussianMixture(2, tol=1e-6, max_iter=100, reg_covar=1e-6, random_state=0).fit(margin[y == k, None])
        split.append(gm.means_.min() < 0)
        if split[-1]:
            expected[y == k] = gm.predict_proba(margin[y == k, None])[:, np.argmax(gm.means_[:, 0])] > 0.5
    assert split == [False, True, False] and sel.split_classes.tolist() == split
    mask = sel.clean_mask.numpy()
    assert (mask == expected).mean() >= 0.995
    assert mask[y != 1].all() and sel.clean_prob[labels != 1].eq(1).all()  # the one-population classes stay whole
    m = selection_metrics(sel.clean_mask[labels == 1], is_clean[labels == 1])
    assert m["precision"] >= 0.95 and m["recall"] >= 0.9
    # the published score cuts the clean classes in two, which is what the margin option avoids
    plain = fine_select(feats, labels, 3)
    assert (~plain.clean_mask[labels != 1]).float().mean() > 0.05


def test_margin_option_through_every_entry_point() -> None:
    feats, labels, _ = asymmetric_features(seed=1)
    sel = fine_select(feats, labels, 3, score="margin")
    again = split_scores(sel.scores, labels, 3, margin=True)
    assert torch.equal(again.clean_mask, sel.clean_mask) and torch.equal(again.split_classes, sel.split_classes)
    n = len(labels)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    sharded = fine_select_distributed(feats[order], labels[order], order, n, 3, score="margin")
    assert (sharded.clean_mask == sel.clean_mask).float().mean() >= 0.999
    kmeans = fine_select(feats, labels, 3, score="margin", fit="kmeans")
    assert kmeans.split_classes.tolist() == [False, True, False] and kmeans.clean_mask[labels != 1].all()
    default = fine_select(feats, labels, 3)
    assert default.split_classes.tolist() == [True, True, True]
    with pytest.raises(ValueError, match="margins"):
        fine_select(feats, labels, 3, score="margin", fit="bmm")
    with pytest.raises(ValueError, match="margins"):
        split_scores(sel.scores, labels, 3, fit="bmm", margin=True)


def test_small_loss_select_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    losses = np.round(rng.exponential(size=997), 1)  # many ties
    labels = rng.integers(0, 7, 997)
    for ratio in (0.0, 0.33, 0.5, 0.8, 1.0):
        sel = small_loss_select(torch.from_numpy(losses), torch.from_numpy(labels), ratio)
        expected = np.zeros(997, bool)
        expected[np.argsort(losses, kind="stable")[:round(ratio * 997)]] = True
        assert np.array_equal(sel.clean_mask.numpy(), expected)
        sel = small_loss_select(torch.from_numpy(losses), torch.from_numpy(labels), ratio, per_class=True,
                                num_classes=8)
        expected = np.zeros(997, bool)
        for k in range(8):
            idx = np.flatnonzero(labels == k)
            expected[idx[np.argsort(losses[idx], kind="stable")[:round(ratio * len(idx))]]] = True
        assert np.array_equal(sel.clean_mask.numpy(), expected)
        assert np.array_equal(sel.clean_prob.numpy(), expected.astype(np.float32))
    with pytest.raises(ValueError, match="per_class"):
        small_loss_select(torch.from_numpy(losses), None, 0.5, per_class=True)


def test_loss_gmm_select_matches_dividemix_recipe() -> None:
    rng = np.random.default_rng(1)
    is_clean = rng.random(3000) < 0.6
    losses = np.where(is_clean, rng.gamma(2.0, 0.1, 3000), rng.normal(2.5, 0.5, 3000).clip(0.5))
    history = np.stack([np.clip(losses + rng.normal(0, 0.05, 3000), 0, None) for _ in range(4)])
    history = (history - history.min(1, keepdims=True)) / np.ptp(history, axis=1, keepdims=True)
    for hist in (None, history):
        sel = loss_gmm_select(torch.from_numpy(losses), history=None if hist is None else torch.from_numpy(hist))
        normed = (losses - losses.min()) / (losses.max() - losses.min())
        x = normed if hist is None else np.vstack([hist, normed]).mean(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gm = GaussianMixture(n_components=2, max_iter=10, tol=1e-2, reg_covar=5e-4, random_state=0)
            gm.fit(x[:, None])
        prob = gm.predict_proba(x[:, None])[:, gm.means_.argmin()]
        np.testing.assert_allclose(sel.clean_prob.numpy(), prob, atol=1e-6)
        assert np.array_equal(sel.clean_mask.numpy(), prob > 0.5)
        np.testing.assert_allclose(sel.scores.numpy(), normed, atol=1e-6)
        assert sel.n_iter.item() == gm.n_iter_
        assert selection_metrics(sel.clean_mask, torch.from_numpy(is_clean))["f1"] > 0.95
    sel, caught = record(loss_gmm_select, torch.full((50,), 0.7))
    assert len(caught) == 1 and sel.clean_mask.all()
    with pytest.raises(ValueError, match="history"):
        loss_gmm_select(torch.from_numpy(losses), history=torch.zeros(4, 10))


def test_selection_metrics_match_sklearn() -> None:
    rng = np.random.default_rng(2)
    is_clean, mask, labels = rng.random(800) < 0.6, rng.random(800) < 0.5, rng.integers(0, 5, 800)
    m = selection_metrics(torch.from_numpy(mask), torch.from_numpy(is_clean), labels=torch.from_numpy(labels),
                          num_classes=6)
    assert m["precision"] == pytest.approx(skm.precision_score(is_clean, mask))
    assert m["recall"] == pytest.approx(skm.recall_score(is_clean, mask))
    assert m["f1"] == pytest.approx(skm.f1_score(is_clean, mask))
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(is_clean, mask))
    assert m["specificity"] == pytest.approx(skm.recall_score(~is_clean, ~mask))
    assert m["selected"] == mask.sum()
    assert m["per_class_precision"][5] == m["per_class_recall"][5] == m["per_class_f1"][5] == 0.0  # no samples
    for k in range(5):
        sub = labels == k
        assert m["per_class_precision"][k] == pytest.approx(skm.precision_score(is_clean[sub], mask[sub],
                                                                                zero_division=0))
        assert m["per_class_recall"][k] == pytest.approx(skm.recall_score(is_clean[sub], mask[sub], zero_division=0))
        assert m["per_class_f1"][k] == pytest.approx(skm.f1_score(is_clean[sub], mask[sub], zero_division=0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        empty = selection_metrics(np.zeros(10, bool), np.ones(10, bool), labels=np.zeros(10, int))
        none_clean = selection_metrics(np.ones(4, bool), np.zeros(4, bool))
    assert empty["precision"] == empty["recall"] == empty["f1"] == empty["specificity"] == 0.0
    assert empty["selected"] == 0 and empty["per_class_f1"] == [0.0]
    assert none_clean["precision"] == none_clean["recall"] == none_clean["specificity"] == 0.0
    assert m["per_class_noisy"] == [int(((labels == k) & ~is_clean).sum()) for k in range(6)]
    assert m["uncorrupted_recall"] is None  # every class holds wrong labels
    assert empty["per_class_noisy"] == [0] and empty["uncorrupted_recall"] == 0.0


def test_uncorrupted_recall_counts_the_classes_without_wrong_labels() -> None:
    # class 0 holds a wrong label (sample 2), classes 1 and 2 hold none: their 5 clean samples, 3 of them selected
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    is_clean = np.array([1, 1, 0, 1, 1, 1, 1, 1], bool)
    mask = np.array([0, 0, 1, 1, 0, 1, 0, 1], bool)
    m = selection_metrics(mask, is_clean, labels=labels, num_classes=3)
    assert m["per_class_noisy"] == [1, 0, 0]
    assert m["uncorrupted_recall"] == pytest.approx(3 / 5)
    assert selection_metrics(mask, is_clean)["selected"] == 4 and "uncorrupted_recall" not in selection_metrics(
        mask, is_clean)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu() -> None:
    feats, labels, _ = synthetic(4000, 64, 8, 0.5, spread=1.0, seed=10)
    ref = torch.arange(4000) % 5 != 0
    for fit in ("gmm", "kmeans", "bmm"):
        cpu = fine_select(feats, labels, 8, ref_mask=ref, fit=fit)
        gpu = fine_select(feats.cuda(), labels.cuda(), 8, ref_mask=ref.cuda(), fit=fit)
        assert gpu.clean_mask.is_cuda
        assert (gpu.eigvecs.cpu().double() * cpu.eigvecs.double()).sum(1).min() >= 0.9999
        torch.testing.assert_close(gpu.scores.cpu(), cpu.scores, atol=1e-5, rtol=1e-4)
        assert (gpu.clean_mask.cpu() == cpu.clean_mask).float().mean() >= 0.999
