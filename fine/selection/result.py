"""What a selector returns: :class:`Selection`, and the helpers every selector shares to build one."""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch


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



def warn_kept(classes: list[int], reason: str, *, stacklevel: int = 3) -> None:
    shown = ", ".join(map(str, classes[:10])) + (", ..." if len(classes) > 10 else "")
    warnings.warn(f"{len(classes)} class(es) [{shown}] {reason}; all their samples are kept as clean",
                  stacklevel=stacklevel)


def empty_selection(device: torch.device) -> Selection:
    empty = torch.zeros(0, device=device)
    return Selection(clean_mask=empty.bool(), clean_prob=empty, scores=empty)

