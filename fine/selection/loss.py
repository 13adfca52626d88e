"""The loss-based baselines: small-loss (per class) and DivideMix's loss GMM, with their registry entries."""
from __future__ import annotations

import torch

from fine.mixture import fit_gmm
from fine.selection.checks import check_labels, check_losses
from fine.selection.registry import P_THRESHOLD, Inputs, Option, SelectorSpec, register
from fine.selection.result import Selection, empty_selection, warn_kept


def small_loss_select(losses: torch.Tensor, labels: torch.Tensor | None, keep_ratio: float, *,
                      per_class: bool = False, num_classes: int | None = None) -> Selection:
    """Keep the ``round(keep_ratio * n)`` smallest-loss samples, over all samples or within each noisy class.

    Ties are broken by sample index (stable sort). ``round`` is round-half-to-even, as Python's.

    Parameters
    ----------
    losses : (N,) float per-sample losses
    labels : (N,) int noisy labels (needed when ``per_class``)
    keep_ratio : fraction in [0, 1] to keep (1 - forget rate)
    per_class : rank within each noisy class instead of globally
    num_classes : C (default: max label + 1)

    Returns
    -------
    Selection with hard clean_prob and ``scores`` = the losses.
    """
    losses = check_losses(losses)
    if not 0.0 <= keep_ratio <= 1.0:
        raise ValueError(f"keep_ratio must lie in [0, 1], got {keep_ratio}")
    n = losses.shape[0]
    order = torch.argsort(losses, stable=True)
    if per_class:
        if labels is None:
            raise ValueError("per_class=True needs the noisy labels")
        if num_classes is None:
            num_classes = int(labels.max()) + 1 if n else 1
        labels = check_labels(labels, n, num_classes, losses.device)
        order = order[torch.argsort(labels[order], stable=True)]  # by class, then loss, then index
        counts = torch.bincount(labels, minlength=num_classes)
        starts = torch.cumsum(counts, 0) - counts
        rank_sorted = torch.arange(n, device=losses.device) - starts[labels[order]]
        keep = torch.round(keep_ratio * counts.to(torch.float64)).to(torch.int64)
        selected_sorted = rank_sorted < keep[labels[order]]
    else:
        selected_sorted = torch.arange(n, device=losses.device) < round(keep_ratio * n)
    mask = torch.empty(n, dtype=torch.bool, device=losses.device)
    mask[order] = selected_sorted
    return Selection(clean_mask=mask, clean_prob=mask.float(), scores=losses.float())


def loss_gmm_select(losses: torch.Tensor, *, threshold: float = 0.5, history: torch.Tensor | None = None,
                    reg_covar: float = 5e-4, max_iter: int = 10, tol: float = 1e-2) -> Selection:
    """DivideMix's split: a 2-component GMM on min-max normalised per-sample losses; clean = low-loss component.

    Parameters
    ----------
    losses : (N,) float per-sample cross-entropy losses of this epoch
    threshold : clean when the posterior of the lower-mean component exceeds it
    history : (H, N) normalised losses of previous epochs (this function's ``scores``); the GMM is fitted on the
        mean of these rows and the current normalised loss. DivideMix at 90% noise averages the last 5 epochs,
        i.e. pass the previous 4.
    reg_covar, max_iter, tol : GMM options (DivideMix's values by default)

    Returns
    -------
    Selection with ``scores`` = the current normalised losses (append them to ``history``) and (1, 2) mixture
    parameters. If all losses are equal, every sample is kept (with a warning).
    """
    losses = check_losses(losses).to(torch.float64)
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must lie in [0, 1], got {threshold}")
    n = losses.shape[0]
    if n == 0:
        return empty_selection(losses.device)
    span = losses.max() - losses.min()
    normalised = (losses - losses.min()) / torch.where(span > 0, span, 1.0)
    values = normalised
    if history is not None:
        if history.dim() != 2 or history.shape[1] != n:
            raise ValueError(f"history must have shape (H, {n}), got {tuple(history.shape)}")
        values = torch.cat([history.to(normalised), normalised.unsqueeze(0)]).mean(0)
    result = fit_gmm(values.unsqueeze(0), torch.ones(1, n, dtype=torch.bool, device=losses.device),
                     max_iter=max_iter, tol=tol, reg_covar=reg_covar)
    if bool(result.degenerate[0]):
        warn_kept([0], "(all samples) have equal losses")
        prob = torch.ones(n, dtype=torch.float64, device=losses.device)
        mask = torch.ones(n, dtype=torch.bool, device=losses.device)
    else:
        prob = 1.0 - result.posterior[0]
        mask = prob > threshold
    return Selection(clean_mask=mask, clean_prob=prob.float(), scores=normalised.float(), means=result.means,
                     variances=result.variances, weights=result.weights, n_iter=result.n_iter,
                     converged=result.converged)



def _small_loss(inputs: Inputs, options: dict, state: dict) -> Selection:
    return small_loss_select(inputs.losses(), inputs.labels, 1.0 - options["forget_rate"], per_class=True,
                             num_classes=inputs.num_classes)


def _loss_gmm(inputs: Inputs, options: dict, state: dict) -> Selection:
    """DivideMix's split on the mean of this round's and the ``loss_history - 1`` previous rounds' normalised
    losses; ``state["history"]`` keeps those rounds' (N,) normalised losses."""
    history = state.get("history", [])
    sel = loss_gmm_select(inputs.losses(), threshold=options["p_threshold"],
                          history=torch.stack(history) if history else None)
    keep = options["loss_history"] - 1
    state["history"] = (history + [sel.scores])[-keep:] if keep else []
    return sel


register(SelectorSpec(
    name="small-loss", label="small-loss", needs=("logits",), select=_small_loss, higher_is_cleaner=False,
    help="small-loss (the --forget_rate largest losses of each class dropped)",
    options=(Option("forget_rate", float, None, valid=lambda v: 0.0 <= v < 1.0, requirement="is outside [0, 1)",
                    help="small-loss: tau, the fraction of each class's largest losses dropped"),)))

register(SelectorSpec(
    name="loss-gmm", label="loss-gmm", needs=("logits",), select=_loss_gmm, higher_is_cleaner=False,
    init_state=lambda: {"history": []},
    help="loss-gmm (DivideMix's mixture on the per-sample loss)",
    options=(P_THRESHOLD,
             Option("loss_history", int, 1, valid=lambda v: v >= 1, requirement="must be at least 1",
                    help="loss-gmm: fit the GMM on the normalised loss averaged over this many recent rounds "
                         "(default per recipe: 5 in DivideMix at 90%% symmetric noise, else 1)"))))
