"""The optimiser and the per-epoch learning-rate schedule of a network, from the resolved flags."""
from __future__ import annotations

import argparse
import math

import torch
from torch import nn


def build_optimizer(model: nn.Module, args: argparse.Namespace) -> torch.optim.Optimizer:
    """SGD with momentum (``--optimizer sgd``, the paper's) or Adam (Co-teaching+), with ``--lr`` and
    ``--weight_decay``."""
    if args.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)


def lr_factor(args: argparse.Namespace, epoch: int) -> float:
    """Multiplier of the initial lr at ``epoch`` for ``--lr_schedule``."""
    if args.lr_schedule == "multistep":
        return args.gamma ** sum(epoch >= m for m in args.milestones)
    if args.lr_schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * epoch / args.epochs))
    if epoch < args.decay_start:  # linear-decay
        return 1.0
    return (args.epochs - epoch) / max(args.epochs - args.decay_start, 1)


class EpochSchedule(torch.optim.lr_scheduler.LambdaLR):
    """Per-epoch lr schedule; for Adam under linear-decay, beta1 drops from 0.9 to 0.1 at ``--decay_start`` as in
    the Co-teaching papers' code (bhanML/Co-teaching, xingruiyu/coteaching_plus: ``adjust_learning_rate``)."""

    def __init__(self, optimizer: torch.optim.Optimizer, args: argparse.Namespace) -> None:
        self.decay_start = args.decay_start if args.lr_schedule == "linear-decay" else None
        super().__init__(optimizer, lambda epoch: lr_factor(args, epoch))

    def step(self, epoch: int | None = None) -> None:
        super().step()
        if self.decay_start is not None and isinstance(self.optimizer, torch.optim.Adam):
            beta1 = 0.1 if self.last_epoch >= self.decay_start else 0.9
            for group in self.optimizer.param_groups:
                group["betas"] = (beta1, group["betas"][1])
