"""A small 1-D CNN for signals: (B, C, L) standardised channels -> (B, 128) penultimate features."""
from __future__ import annotations

import torch
from torch import nn

from fine.models.batchnorm import BatchNorm1d


def _conv_bn_relu(in_ch: int, out_ch: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv1d(in_ch, out_ch, kernel, padding=kernel // 2, bias=False), BatchNorm1d(out_ch),
                         nn.ReLU(inplace=True))


class CNN1d(nn.Module):
    """conv64 (k7) -> max-pool 2 -> conv128 (k5) -> max-pool 2 -> conv128 (k3) -> global average pool, each
    convolution with BatchNorm + ReLU (the fully convolutional time-series baseline's shape, narrower).

    Any length L >= 1 (the pools round up); the receptive field is 26 time steps. ``forward_features``:
    (B, C, L) -> (B, 128). About 91k parameters for 2 channels, plus the head.
    """

    def __init__(self, num_classes: int, in_channels: int = 1) -> None:
        super().__init__()
        self.features = nn.Sequential(_conv_bn_relu(in_channels, 64, 7), nn.MaxPool1d(2, ceil_mode=True),
                                      _conv_bn_relu(64, 128, 5), nn.MaxPool1d(2, ceil_mode=True),
                                      _conv_bn_relu(128, 128, 3), nn.AdaptiveAvgPool1d(1), nn.Flatten())
        self.feature_dim = 128
        self.head = nn.Linear(128, num_classes)
        for m in self.features.modules():  # He init (fan-out) as the image CNNs; BN and the head keep PyTorch's init
            if isinstance(m, nn.Conv1d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, L) -> (B, 128) penultimate features."""
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, L) -> (B, num_classes) logits."""
        return self.head(self.forward_features(x))


def cnn1d(num_classes: int, in_channels: int = 1) -> CNN1d:
    """The 1-D CNN for signals of ``in_channels`` channels."""
    return CNN1d(num_classes, in_channels)
