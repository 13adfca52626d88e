"""Known-answer checks of the MixMatch pieces of DivideMix."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dividemix.mixmatch import (co_guess, co_refine, linear_rampup, mixup, neg_entropy_penalty, sharpen,
                                soft_cross_entropy, uniform_prior_penalty, unlabelled_mse)


def _entropy(p: torch.Tensor) -> torch.Tensor:
    return -(p * p.clamp_min(1e-30).log()).sum(1)


def test_sharpen_sums_to_one_lowers_entropy_and_matches_formula():
    p = torch.softmax(torch.randn(8, 5, generator=torch.Generator().manual_seed(0)), 1)
    q = sharpen(p, 0.5)
    torch.testing.assert_close(q.sum(1), torch.ones(8))
    torch.testing.assert_close(q, p ** 2 / (p ** 2).sum(1, keepdim=True))
    assert (_entropy(q) < _entropy(p)).all()
    torch.testing.assert_close(sharpen(p, 1.0), p)
    assert torch.equal(q.argmax(1), p.argmax(1))


def test_sharpen_low_temperature_gives_one_hot():
    p = torch.tensor([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]])
    q = sharpen(p, 1e-3)
    assert torch.isfinite(q).all()
    torch.testing.assert_close(q, torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]))


def test_mixup_weight_at_least_half_and_convex_combination():
    x = torch.randn(16, 3, 4, 4)
    y = torch.softmax(torch.randn(16, 5), 1)
    lams = []
    for seed in range(50):
        x_mix, y_mix, lam = mixup(x, y, 4.0, np.random.default_rng(seed))
        replay = np.random.default_rng(seed)
        raw = replay.beta(4.0, 4.0)
        perm = torch.from_numpy(replay.permutation(16))
        assert lam == pytest.approx(max(raw, 1 - raw))
        torch.testing.assert_close(x_mix, lam * x + (1 - lam) * x[perm])
        torch.testing.assert_close(y_mix, lam * y + (1 - lam) * y[perm])
        torch.testing.assert_close(y_mix.sum(1), torch.ones(16))
        lams.append(lam)
    assert min(lams) >= 0.5 and max(lams) <= 1.0 and len(set(lams)) > 1


def test_co_refine_matches_hand_computation():
    y = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    w = torch.tensor([0.8, 0.0])
    p = torch.tensor([[0.2, 0.6, 0.2], [0.5, 0.25, 0.25]])
    # Row 1: 0.8*[1,0,0] + 0.2*[.2,.6,.2] = [.84,.12,.04]; squared [.7056,.0144,.0016] / .7216.
    # Row 2: w = 0 keeps the prediction [.5,.25,.25]; squared [.25,.0625,.0625] / .375.
    expected = torch.tensor([[0.7056, 0.0144, 0.0016], [0.25, 0.0625, 0.0625]])
    expected = expected / expected.sum(1, keepdim=True)
    torch.testing.assert_close(co_refine(y, w, p, 0.5), expected)
    torch.testing.assert_close(co_refine(y, torch.ones(2), p, 0.5), y)


def test_co_guess_averages_then_sharpens():
    gen = torch.Generator().manual_seed(1)
    probs = [torch.softmax(torch.randn(4, 6, generator=gen), 1) for _ in range(4)]
    mean = (probs[0] + probs[1] + probs[2] + probs[3]) / 4
    torch.testing.assert_close(co_guess(probs, 0.5), mean ** 2 / (mean ** 2).sum(1, keepdim=True))


def test_linear_rampup_values():
    assert linear_rampup(10.0, 10) == 0.0
    assert linear_rampup(5.0, 10) == 0.0
    assert linear_rampup(14.0, 10) == pytest.approx(0.25)
    assert linear_rampup(18.5, 10) == pytest.approx(8.5 / 16)
    assert linear_rampup(26.0, 10) == 1.0
    assert linear_rampup(300.0, 10) == 1.0
    assert linear_rampup(12.0, 10, length=4) == pytest.approx(0.5)


def test_losses_and_penalties_against_plain_formulas():
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(5, 4, generator=gen)
    targets = torch.softmax(torch.randn(5, 4, generator=gen), 1)
    p = torch.softmax(logits, 1)
    assert soft_cross_entropy(logits, targets).item() == pytest.approx(-(targets * p.log()).sum(1).mean().item(),
                                                                       rel=1e-5)
    assert unlabelled_mse(logits, targets).item() == pytest.approx(((p - targets) ** 2).mean().item(), rel=1e-5)
    mean_p = p.mean(0)
    assert uniform_prior_penalty(logits).item() == pytest.approx((0.25 * (0.25 / mean_p).log()).sum().item(),
                                                                 rel=1e-5)
    assert uniform_prior_penalty(torch.zeros(3, 4)).item() == pytest.approx(0.0, abs=1e-7)
    assert neg_entropy_penalty(logits).item() == pytest.approx(-_entropy(p).mean().item(), rel=1e-5)
    assert neg_entropy_penalty(torch.zeros(2, 4)).item() == pytest.approx(-math.log(4), rel=1e-6)
