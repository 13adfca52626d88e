"""The MixMatch pieces of DivideMix (Li, Socher and Hoi, ICLR 2020) as small pure functions."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def sharpen(p: torch.Tensor, T: float) -> torch.Tensor:
    """Temperature sharpening ``p_c^(1/T) / sum_k p_k^(1/T)`` of each row.

    Parameters
    ----------
    p : (B, C) probabilities (rows sum to one)
    T : temperature in (0, 1]; smaller is sharper, 1 leaves ``p`` unchanged

    Returns
    -------
    (B, C) probabilities, each row summing to one.
    """
    # p^(1/T) underflows for small T; the same ratio computed in log space stays finite.
    return F.softmax(torch.log(p.clamp_min(1e-30)) / T, dim=1)


def co_refine(y_onehot: torch.Tensor, w: torch.Tensor, p: torch.Tensor, T: float) -> torch.Tensor:
    """Label co-refinement of labelled samples: ``sharpen(w * y + (1 - w) * p, T)``.

    Parameters
    ----------
    y_onehot : (B, C) one-hot noisy labels
    w : (B,) clean probability of each sample (from the peer network's split)
    p : (B, C) the trained network's mean softmax over the sample's augmented views
    T : sharpening temperature

    Returns
    -------
    (B, C) refined soft targets.
    """
    w = w.reshape(-1, 1).to(p.dtype)
    return sharpen(w * y_onehot.to(p.dtype) + (1.0 - w) * p, T)


def co_guess(probs_list: list[torch.Tensor], T: float) -> torch.Tensor:
    """Co-guessing of unlabelled samples: sharpen the average of several predictions.

    Parameters
    ----------
    probs_list : list of (B, C) softmax outputs (DivideMix: both networks on both augmented views, four in all)
    T : sharpening temperature

    Returns
    -------
    (B, C) guessed soft targets.
    """
    return sharpen(torch.stack(probs_list).mean(0), T)


def mixup(x: torch.Tensor, y: torch.Tensor, alpha: float,
          generator: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, float]:
    """MixMatch's mixup: each sample mixed with a random partner, weighted towards itself.

    ``lam ~ Beta(alpha, alpha)``, ``lam = max(lam, 1 - lam)``, ``x_mix = lam * x + (1 - lam) * x[perm]`` and the
    same for ``y``, with one ``lam`` and one permutation for the whole batch.

    Parameters
    ----------
    x : (B, ...) inputs
    y : (B, C) soft targets
    alpha : Beta concentration (> 0)
    generator : source of ``lam`` and the permutation

    Returns
    -------
    x_mix : (B, ...), y_mix : (B, C), lam : the weight in [0.5, 1] of the original samples
    """
    lam = float(generator.beta(alpha, alpha))
    lam = max(lam, 1.0 - lam)
    perm = torch.from_numpy(generator.permutation(len(x))).to(x.device)
    return lam * x + (1.0 - lam) * x[perm], lam * y + (1.0 - lam) * y[perm], lam


def linear_rampup(progress: float, warmup: int, length: float = 16.0) -> float:
    """Weight of the unlabelled loss, rising linearly from 0 to 1 over ``length`` epochs after ``warmup``.

    ``progress`` is the epoch count including the fraction of the current epoch done (``epoch + batch / num_iter``).
    """
    return float(np.clip((progress - warmup) / length, 0.0, 1.0))


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``-sum_c targets_c log softmax(logits)_c``; logits and targets are (B, C)."""
    return -(F.log_softmax(logits, dim=1) * targets).sum(1).mean()


def unlabelled_mse(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean squared error between ``softmax(logits)`` and the guessed targets, averaged over all (B, C) entries."""
    return ((F.softmax(logits, dim=1) - targets) ** 2).mean()


def uniform_prior_penalty(logits: torch.Tensor) -> torch.Tensor:
    """``sum_c pi_c log(pi_c / mean_b p_bc)`` with a uniform prior ``pi``: keeps the batch from collapsing to few
    classes. ``logits`` is (B, C); the result is a scalar (0 when the mean prediction is uniform)."""
    num_classes = logits.shape[1]
    prior = torch.full((num_classes,), 1.0 / num_classes, device=logits.device, dtype=logits.dtype)
    mean_pred = F.softmax(logits, dim=1).mean(0)
    return (prior * torch.log(prior / mean_pred)).sum()


def neg_entropy_penalty(logits: torch.Tensor) -> torch.Tensor:
    """Confidence penalty ``mean_b sum_c p_bc log p_bc`` (negative entropy) added to the warm-up loss under
    asymmetric noise; minimising it keeps predictions from becoming over-confident. ``logits`` is (B, C)."""
    log_p = F.log_softmax(logits, dim=1)
    return (log_p.exp() * log_p).sum(1).mean()
