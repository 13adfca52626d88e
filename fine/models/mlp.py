"""A multilayer perceptron for tables: (B, D) standardised features -> (B, 128) penultimate features."""
from __future__ import annotations

import torch
from torch import nn

from fine.models.batchnorm import BatchNorm1d

WIDTHS = (256, 256, 128)  # hidden widths; the last is the penultimate feature dimension


class MLP(nn.Module):
    """Linear -> BatchNorm -> ReLU blocks of widths ``WIDTHS``, then the linear head.

    The penultimate features are post-ReLU (non-negative), like the pooled features of the image networks, which
    FINE's uncentred per-class Gram matrices expect. About 105k parameters for 20 input features, plus the head.
    """

    def __init__(self, num_classes: int, in_features: int, widths: tuple[int, ...] = WIDTHS) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for width_in, width_out in zip((in_features, *widths[:-1]), widths):
            layers += [nn.Linear(width_in, width_out, bias=False), BatchNorm1d(width_out), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.feature_dim = widths[-1]
        self.head = nn.Linear(widths[-1], num_classes)
        for m in self.features.modules():  # He init for the ReLU layers; BN and the head keep PyTorch's init
            if isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (B, feature_dim) penultimate features."""
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (B, num_classes) logits."""
        return self.head(self.forward_features(x))


def mlp(num_classes: int, in_features: int) -> MLP:
    """The MLP for tables of ``in_features`` features."""
    return MLP(num_classes, in_features)
