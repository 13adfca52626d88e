"""Detection quality of a selection against the clean labels."""
from __future__ import annotations

import numpy as np
import torch


def selection_metrics(clean_mask: torch.Tensor | np.ndarray, is_clean: torch.Tensor | np.ndarray, *,
                      labels: torch.Tensor | np.ndarray | None = None, num_classes: int | None = None) -> dict:
    """Detection quality of a selection, positives = truly clean samples.

    Parameters
    ----------
    clean_mask : (N,) bool, selected samples; is_clean : (N,) bool, noisy label == true label
    labels : (N,) int noisy labels; when given, per-class precision/recall/F1 over samples with that noisy label
    num_classes : C for the per-class lists (default: max label + 1)

    Returns
    -------
    dict with floats ``precision``, ``recall``, ``f1``, ``specificity``, ``accuracy`` (fractions) and int
    ``selected``; with ``labels``, lists ``per_class_precision``, ``per_class_recall``, ``per_class_f1``,
    ``per_class_noisy`` (ints: wrongly labelled samples per noisy class) and ``uncorrupted_recall``, the recall over
    the classes holding no wrongly labelled sample (e.g. those asymmetric noise never flips into; None when every
    class holds some). A ratio whose denominator is 0 (nothing selected, no clean or no noisy samples) is 0, as
    scikit-learn's ``zero_division=0``.
    """
    sel = torch.as_tensor(clean_mask).bool().cpu()
    pos = torch.as_tensor(is_clean).bool().cpu()
    if sel.shape != pos.shape or sel.dim() != 1:
        raise ValueError(f"clean_mask and is_clean must be (N,) of equal shape, got {tuple(sel.shape)} "
                         f"and {tuple(pos.shape)}")

    def ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
        return torch.where(den > 0, num / den.clamp_min(1), 0.0)

    def prf(tp: torch.Tensor, n_sel: torch.Tensor, n_pos: torch.Tensor) -> tuple[torch.Tensor, ...]:
        precision, recall = ratio(tp, n_sel), ratio(tp, n_pos)
        return precision, recall, ratio(2 * precision * recall, precision + recall)

    tp = (sel & pos).sum().double()
    tn = (~sel & ~pos).sum().double()
    n_sel, n_pos, n = sel.sum().double(), pos.sum().double(), sel.numel()
    precision, recall, f1 = prf(tp, n_sel, n_pos)
    out = {"precision": float(precision), "recall": float(recall), "f1": float(f1),
           "specificity": float(ratio(tn, n - n_pos)), "accuracy": float(ratio(tp + tn, torch.tensor(float(n)))),
           "selected": int(n_sel)}
    if labels is not None:
        lab = torch.as_tensor(labels).long().cpu()
        if lab.shape != sel.shape:
            raise ValueError(f"labels must have shape {tuple(sel.shape)}, got {tuple(lab.shape)}")
        c = num_classes if num_classes is not None else (int(lab.max()) + 1 if n else 0)

        def count(m: torch.Tensor) -> torch.Tensor:
            return torch.bincount(lab[m], minlength=c).double()

        p, r, f = prf(count(sel & pos), count(sel), count(pos))
        noisy = count(~pos)
        whole = (noisy == 0)[lab] & pos
        out.update(per_class_precision=p.tolist(), per_class_recall=r.tolist(), per_class_f1=f.tolist(),
                   per_class_noisy=noisy.long().tolist(),
                   uncorrupted_recall=float((sel & whole).sum() / whole.sum()) if bool(whole.any()) else None)
    return out

