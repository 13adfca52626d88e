"""A tiny CNN for 8x8 single-channel images (scikit-learn digits): the CPU demo backbone."""
from __future__ import annotations

import torch
from torch import nn



def _conv_bn_relu(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch),
                         nn.ReLU(inplace=True))


class SmallCNN(nn.Module):
    """conv32 -> conv64 -> 2x2 max-pool -> conv128 -> global average pool (3x3 convs with BN + ReLU).

    ``forward_features``: (B, in_channels, H, W) -> (B, 128). About 92k parameters plus the head.
    """

    def __init__(self, num_classes: int, in_channels: int = 1) -> None:
        super().__init__()
        self.features = nn.Sequential(_conv_bn_relu(in_channels, 32), _conv_bn_relu(32, 64), nn.MaxPool2d(2),
                                      _conv_bn_relu(64, 128), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.feature_dim = 128
        self.head = nn.Linear(128, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) -> (B, 128) penultimate features."""
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) -> (B, num_classes) logits."""
        return self.head(self.forward_features(x))


def small_cnn(num_classes: int, in_channels: int = 1) -> SmallCNN:
    """The small CNN for 8x8 digits."""
    return SmallCNN(num_classes, in_channels)
