"""FINE's discriminant margin (score="lda", fine.selection.discriminant) against numpy / scikit-learn references."""
import numpy as np
import pytest
import torch
from sklearn.covariance import ledoit_wolf_shrinkage

from fine.selection.discriminant import discriminant_statistics, discriminant_scores
from fine.selection import alignment_scores, fine_select


def _data(seed=0, n=400, d=6, c=4):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, c, size=n)
    feats = rng.normal(size=(c, d))[labels] * 3 + rng.normal(size=(n, d)) @ rng.normal(size=(d, d))
    return feats, labels


def _reference_margins(feats, labels, c, alpha):
    means = np.stack([feats[labels == k].mean(0) for k in range(c)])
    resid = feats - means[labels]
    cov = resid.T @ resid / len(feats)
    cov = (1 - alpha) * cov + alpha * np.trace(cov) / cov.shape[0] * np.eye(cov.shape[0])
    inv = np.linalg.inv(cov)
    # half the difference of squared Mahalanobis distances: nearest other class minus own class
    dist = np.stack([np.einsum("nd,de,ne->n", feats - m, inv, feats - m) for m in means], 1)
    own = dist[np.arange(len(feats)), labels]
    dist[np.arange(len(feats)), labels] = np.inf
    return 0.5 * (dist.min(1) - own), resid


@pytest.mark.parametrize("alpha", [0.0, 0.3])
def test_margins_match_mahalanobis_reference(alpha):
    feats, labels = _data()
    expected, _ = _reference_margins(feats, labels, 4, alpha)
    got = discriminant_scores(torch.tensor(feats), torch.tensor(labels), 4, shrinkage=alpha).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_auto_shrinkage_is_ledoit_wolf_of_the_within_class_residuals():
    feats, labels = _data(1, n=60, d=20)
    _, resid = _reference_margins(feats, labels, 4, 0.0)
    _, _, alpha = discriminant_statistics(torch.tensor(feats), torch.tensor(labels), 4)
    assert alpha == pytest.approx(ledoit_wolf_shrinkage(resid, assume_centered=True), rel=1e-6)


def test_mask_restricts_the_statistics():
    feats, labels = _data(2)
    mask = np.arange(len(labels)) % 3 != 0
    expected, _ = _reference_margins(feats[mask], labels[mask], 4, 0.2)
    got = discriminant_scores(torch.tensor(feats), torch.tensor(labels), 4, torch.tensor(mask), shrinkage=0.2)
    np.testing.assert_allclose(got.numpy()[mask], expected, rtol=1e-4, atol=1e-4)


def test_lda_flags_exactly_the_flipped_labels_of_separated_clusters():
    rng = np.random.default_rng(3)
    clean = np.repeat(np.arange(3), 100)
    feats = np.eye(3, 10)[clean] * 8 + rng.normal(size=(300, 10))
    noisy = clean.copy()
    flipped = rng.choice(300, size=30, replace=False)
    noisy[flipped] = (clean[flipped] + 1) % 3
    sel = fine_select(torch.tensor(feats, dtype=torch.float32), torch.tensor(noisy), 3, score="lda")
    assert sorted((~sel.clean_mask).nonzero().squeeze(1).tolist()) == sorted(flipped.tolist())
    assert tuple(sel.eigvecs.shape) == (3, 10)


def test_lda_refuses_bmm_and_direction_scoring():
    feats, labels = _data()
    with pytest.raises(ValueError, match="bmm"):
        fine_select(torch.tensor(feats), torch.tensor(labels), 4, score="lda", fit="bmm")
    with pytest.raises(ValueError, match="lda"):
        alignment_scores(torch.tensor(feats), torch.tensor(labels), torch.ones(4, 6, dtype=torch.float64),
                         score="lda")


def test_lda_through_the_trainers_selector_with_a_reference_mask():
    from fine.selection import SelectorConfig, select_samples
    feats, labels = _data(4)
    ref = torch.tensor(np.arange(len(labels)) % 2 == 0)
    sel = select_samples(SelectorConfig("fine", {"score": "lda"}), torch.tensor(feats, dtype=torch.float32), None,
                         torch.tensor(labels), 4, ref_mask=ref)
    assert sel.clean_mask.shape == (len(labels),) and sel.clean_mask.float().mean() > 0.5
    with pytest.raises(ValueError, match="bmm"):
        SelectorConfig("fine", {"score": "lda", "fit": "bmm"})
    with pytest.raises(ValueError, match="lda_decision"):
        SelectorConfig("fine", {"score": "lda", "lda_decision": "vote"})
    mixture = select_samples(SelectorConfig("fine", {"score": "lda", "lda_decision": "mixture", "lda_refine": 0}),
                             torch.tensor(feats, dtype=torch.float32), None, torch.tensor(labels), 4)
    assert mixture.clean_mask.shape == (len(labels),)


def test_a_singular_covariance_falls_back_to_the_pseudo_inverse():
    """The combination test's report: ReLU features with coordinates zero in every sample and no shrinkage made
    torch.linalg.solve fail."""
    from fine.selection.discriminant import discriminant_select
    feats, labels = _data(4)
    feats = np.concatenate([feats, np.zeros((len(labels), 3))], 1)
    for shrinkage in (0.0, "auto"):
        sel = discriminant_select(torch.tensor(feats, dtype=torch.float32), torch.tensor(labels), 4,
                                  shrinkage=shrinkage)
        assert bool(torch.isfinite(sel.scores).all()) and sel.clean_mask.float().mean() > 0.5


def test_lda_is_refused_across_processes_by_the_sharded_function():
    from fine.selection import fine_select_distributed
    feats, labels = _data(4)
    with pytest.raises(ValueError, match="lda.*one process"):
        fine_select_distributed(torch.tensor(feats), torch.tensor(labels), torch.arange(len(labels)), len(labels), 4,
                                score="lda")
