"""Training losses for noisy labels: cross-entropy, GCE, SCE and ELR.

Every loss is called as ``loss(logits, targets, index)`` with logits (B, C), targets (B,) long and index (B,) long (the
samples' dataset indices), and returns the mean loss; ``per_sample`` returns the (B,) losses without side effects.
Losses are computed in float32 whatever the logits' dtype. A trainer calls ``synchronize()`` after every epoch, which
under ``torchrun`` shares the per-sample state of the losses that keep one (ELR) between the processes.
"""
from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn

from fine.distributed import gather_by_index, get_world_size
from fine.errors import UserError

LOSSES = ("ce", "gce", "sce", "elr")

# Each loss's hyperparameters with their default values: the keyword arguments of build_loss and the suffixes of the
# trainers' --<loss>_<key> flags (whose per-dataset values live in the trainers' recipe tables).
HYPERPARAMETERS = {"ce": {}, "gce": {"q": 0.7}, "sce": {"alpha": 0.1, "beta": 1.0, "a": -4.0},
                   "elr": {"beta": 0.7, "lambda": 3.0}}


class Loss(nn.Module):
    """A training loss; one without per-sample state has nothing to :meth:`synchronize`."""

    def synchronize(self) -> None:
        """Share this process's per-sample state with the other ``torchrun`` processes (a no-op here)."""


class _MeanOfPerSample(Loss):
    """``forward`` is the mean of ``per_sample``."""

    def forward(self, logits: torch.Tensor, targets: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C) logits, (B,) targets, (B,) dataset indices -> scalar mean loss."""
        return self.per_sample(logits, targets, index).mean()


class CrossEntropy(_MeanOfPerSample):
    """Plain cross-entropy, -log p_y."""

    def per_sample(self, logits: torch.Tensor, targets: torch.Tensor,
                   index: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C) logits, (B,) targets -> (B,) losses; ``index`` is unused."""
        return F.cross_entropy(logits.float(), targets, reduction="none")


class GeneralizedCrossEntropy(_MeanOfPerSample):
    """Generalised cross-entropy (Zhang & Sabuncu 2018): (1 - p_y^q) / q; q -> 0 gives CE, q = 1 gives MAE / 2."""

    def __init__(self, q: float = 0.7) -> None:
        super().__init__()
        if not 0.0 < q <= 1.0:
            raise UserError(f"GCE q must lie in (0, 1], got {q}")
        self.q = q

    def per_sample(self, logits: torch.Tensor, targets: torch.Tensor,
                   index: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C) logits, (B,) targets -> (B,) losses; ``index`` is unused."""
        log_py = F.log_softmax(logits.float(), dim=1).gather(1, targets[:, None]).squeeze(1)
        # (1 - exp(q log p)) / q through expm1 stays exact for small q.
        return -torch.expm1(self.q * log_py) / self.q

    def extra_repr(self) -> str:
        return f"q={self.q}"


class SymmetricCrossEntropy(_MeanOfPerSample):
    """Symmetric cross-entropy (Wang et al. 2019): alpha * CE + beta * RCE.

    RCE = -sum_k p_k log(clamp(onehot_k, e^a, 1)) with p clamped to [1e-7, 1], i.e. -a times the probability mass
    off the label. ``a`` = -4 is the paper's A and FINE's published code (Kthyeon/FINE_official:
    dynamic_selection/loss/sce.py:17, clamp at exp(-4)); SCE's own code clamps at 1e-4 (a = log 1e-4 = -9.21).
    """

    def __init__(self, alpha: float = 0.1, beta: float = 1.0, a: float = -4.0) -> None:
        super().__init__()
        if alpha < 0 or beta < 0 or alpha + beta == 0:
            raise UserError(f"SCE alpha and beta must be non-negative and not both zero, got {alpha}, {beta}")
        if a >= 0:
            raise UserError(f"SCE's A is the log of the clamped one-hot's zeros and must be negative, got {a}")
        self.alpha, self.beta, self.a = alpha, beta, a

    def per_sample(self, logits: torch.Tensor, targets: torch.Tensor,
                   index: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C) logits, (B,) targets -> (B,) losses; ``index`` is unused."""
        logits = logits.float()
        ce = F.cross_entropy(logits, targets, reduction="none")
        prob = F.softmax(logits, dim=1).clamp(min=1e-7, max=1.0)
        log_label = torch.full_like(prob, self.a).scatter_(1, targets[:, None], 0.0)
        rce = -(prob * log_label).sum(dim=1)
        return self.alpha * ce + self.beta * rce

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta}, a={self.a}"


class EarlyLearningRegularization(Loss):
    """Early-learning regularisation (Liu et al. 2020): CE + lambda * mean(log(1 - <t_i, p_i>)).

    ``target`` (N, C) is a running average of each sample's predictions, stored by DATASET INDEX (the published code
    stored it by position in the current subset, which scrambles it whenever the selected subset changes). It is a
    buffer, so it travels with ``state_dict`` and ``.to(device)``.

    Under ``torchrun`` each process updates the rows of its own shard of the epoch's samples, so the processes'
    memories diverge until :meth:`synchronize` copies every row any process updated into every process's memory.
    Calling it at the end of each epoch gives every process the memory one process would have: a row's update reads
    only that row, and each sample is visited once per epoch, by one process (a sample that padding gives to two
    processes is updated from the same row on both; either result is kept).

    Parameters
    ----------
    num_samples : N, the size of the dataset the indices refer to.
    num_classes : C.
    beta : momentum of the target memory, in [0, 1).
    lam : regularisation weight lambda >= 0.
    """

    def __init__(self, num_samples: int, num_classes: int, beta: float = 0.7, lam: float = 3.0) -> None:
        super().__init__()
        if not 0.0 <= beta < 1.0:
            raise UserError(f"ELR beta must lie in [0, 1), got {beta}")
        if lam < 0:
            raise UserError(f"ELR lambda must be non-negative, got {lam}")
        if num_samples < 1:
            raise UserError(f"ELR needs the training-set size, got num_samples={num_samples}")
        self.beta, self.lam = beta, lam
        self.register_buffer("target", torch.zeros(num_samples, num_classes))
        # (N,) rows updated since the last synchronize(); not persistent, so checkpoints hold only ``target``.
        self.register_buffer("_touched", torch.zeros(num_samples, dtype=torch.bool), persistent=False)

    @staticmethod
    def _probs(logits: torch.Tensor) -> torch.Tensor:
        return F.softmax(logits.float(), dim=1).clamp(min=1e-4, max=1.0 - 1e-4)

    @torch.no_grad()
    def update(self, logits: torch.Tensor, index: torch.Tensor) -> None:
        """t[index] <- beta t[index] + (1 - beta) p / sum(p), p = clamp(softmax(logits), 1e-4, 1 - 1e-4)."""
        prob = self._probs(logits.detach())
        index = index.to(self.target.device)
        self.target[index] = self.beta * self.target[index] + (1 - self.beta) * prob / prob.sum(dim=1, keepdim=True)
        self._touched[index] = True

    @torch.no_grad()
    def synchronize(self) -> None:
        """Copy the rows every process updated since the last call into every process's ``target``; then forget
        which rows were updated. In a world of size 1 only the forgetting happens. Every process must call it."""
        if get_world_size() > 1:
            index = self._touched.nonzero().squeeze(1)  # (n_local,)
            num_samples = self.target.shape[0]
            rows = gather_by_index(self.target[index], index, num_samples)  # (N, C)
            updated = gather_by_index(torch.ones_like(index, dtype=torch.bool), index, num_samples)  # (N,)
            self.target[updated] = rows[updated]
        self._touched.zero_()

    def per_sample(self, logits: torch.Tensor, targets: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """(B, C) logits, (B,) targets, (B,) dataset indices -> (B,) losses against the current memory (no update)."""
        ce = F.cross_entropy(logits.float(), targets, reduction="none")
        agreement = (self.target[index.to(self.target.device)] * self._probs(logits)).sum(dim=1)
        return ce + self.lam * torch.log1p(-agreement)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Update the memory rows ``index`` from ``logits``, then return the scalar mean loss."""
        self.update(logits, index)
        return self.per_sample(logits, targets, index).mean()

    def extra_repr(self) -> str:
        return f"num_samples={self.target.shape[0]}, num_classes={self.target.shape[1]}, beta={self.beta}, " \
               f"lam={self.lam}"


def build_loss(name: str, *, num_classes: int, num_samples: int, **hp: float | None) -> Loss:
    """Build a training loss by name.

    Parameters
    ----------
    name : one of :data:`LOSSES`.
    num_classes : C.
    num_samples : N, the training-set size the ``index`` argument refers to (ELR's memory has N rows).
    **hp : the loss's hyperparameters (:data:`HYPERPARAMETERS`): gce ``q``; sce ``alpha``, ``beta``, ``a``; elr
        ``beta``, ``lambda``. Missing or ``None`` values take the defaults there.

    Returns
    -------
    A :class:`Loss` called as ``loss(logits (B, C), targets (B,), index (B,)) -> scalar``, with
    ``per_sample(...) -> (B,)`` and ``synchronize()``.
    """
    if name not in LOSSES:
        raise UserError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
    defaults = HYPERPARAMETERS[name]
    unknown = sorted(set(hp) - set(defaults))
    if unknown:
        raise UserError(f"loss {name} takes no hyperparameter {', '.join(unknown)}; "
                        f"it takes {', '.join(defaults) or 'none'}")
    hp = {k: (defaults[k] if hp.get(k) is None else float(hp[k])) for k in defaults}
    if name == "gce":
        return GeneralizedCrossEntropy(q=hp["q"])
    if name == "sce":
        return SymmetricCrossEntropy(alpha=hp["alpha"], beta=hp["beta"], a=hp["a"])
    if name == "elr":
        return EarlyLearningRegularization(num_samples, num_classes, beta=hp["beta"], lam=hp["lambda"])
    return CrossEntropy()
