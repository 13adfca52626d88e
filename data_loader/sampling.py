"""Per-epoch class-balanced sampling, the published Clothing1M recipe (a fresh balanced subset every epoch)."""
from __future__ import annotations

import torch


def balanced_epoch_indices(labels: torch.Tensor, candidates: torch.Tensor | None, num_samples: int, num_classes: int,
                           generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw a class-balanced, shuffled set of training indices for one epoch.

    Each class with at least one candidate gets an equal share of ``num_samples`` (the first ``num_samples mod k``
    shares, in a random order of the k represented classes, one more); classes without candidates are skipped and
    their share goes to the others. A class's share is drawn uniformly from its candidates (by noisy label) without
    replacement when it has enough of them, with replacement otherwise.

    Parameters
    ----------
    labels : (N,) int64 noisy labels in ``0..num_classes-1``.
    candidates : (M,) int64 indices into ``labels`` to draw from (e.g. the currently selected samples), or None for
        all N.
    num_samples : indices to return, e.g. ``num_batches * batch_size``.
    num_classes : K.
    generator : CPU torch generator driving every draw (None: the global one).

    Returns
    -------
    (num_samples,) int64 CPU tensor of indices into ``labels``, shuffled.
    """
    labels = labels.detach().cpu().long()
    if labels.ndim != 1:
        raise ValueError(f"labels must be a 1-D tensor, got shape {tuple(labels.shape)}")
    if num_samples < 0:
        raise ValueError(f"num_samples must be non-negative, got {num_samples}")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in 0..{num_classes - 1}")
    pool = torch.arange(len(labels)) if candidates is None else candidates.detach().cpu().long()
    if num_samples and not len(pool):
        raise ValueError("cannot draw a balanced epoch from an empty candidate set")
    pool_labels = labels[pool]
    order = torch.argsort(pool_labels, stable=True)
    sorted_pool = pool[order]
    counts = torch.bincount(pool_labels, minlength=num_classes)
    starts = torch.cumsum(counts, 0) - counts
    present = torch.nonzero(counts).flatten()
    share = torch.full((len(present),), num_samples // max(len(present), 1), dtype=torch.long)
    share[torch.randperm(len(present), generator=generator)[:num_samples % max(len(present), 1)]] += 1
    drawn = []
    for c, quota in zip(present.tolist(), share.tolist()):
        n, start = int(counts[c]), int(starts[c])
        if quota <= n:
            pick = torch.randperm(n, generator=generator)[:quota]
        else:
            pick = torch.randint(n, (quota,), generator=generator)
        drawn.append(sorted_pool[start + pick])
    out = torch.cat(drawn) if drawn else torch.empty(0, dtype=torch.long)
    return out[torch.randperm(len(out), generator=generator)]


def balanced_subset(labels: torch.Tensor, num_samples: int, num_classes: int,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """A class-balanced set of distinct training samples: the samples a Clothing1M-recipe round scores.

    :func:`balanced_epoch_indices` over all samples, with repeats dropped (a class with fewer samples than its share
    contributes all it has), sorted.

    Returns
    -------
    (n,) int64 CPU tensor of sorted distinct indices into ``labels``, n <= ``num_samples``.
    """
    return balanced_epoch_indices(labels, None, num_samples, num_classes, generator).unique()
