"""Batch normalisation for (B, C) and (B, C, L) inputs that also trains on a batch holding one value per channel."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BatchNorm1d(nn.BatchNorm1d):
    """``nn.BatchNorm1d``, except that a training batch with one value per channel (one table row, say: the last
    batch of an epoch over N = k * batch_size + 1 samples) has no batch variance, so it is normalised with the
    running statistics, which it leaves unchanged, instead of raising. Every other batch is plain batch norm."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C) or (B, C, L) -> the same shape."""
        if self.training and x.numel() == x.shape[1]:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, training=False,
                                eps=self.eps)
        return super().forward(x)
