"""A small CIFAR CNN with a wide fully connected layer, fast on a CPU: the network of ``bench/real_cifar.py``."""
from __future__ import annotations

import torch
from torch import nn


def _conv(in_ch: int, out_ch: int) -> list[nn.Module]:
    return [nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True)]


class CifarCNN(nn.Module):
    """conv32 -> 2x2 max-pool -> conv64 -> 2x2 max-pool -> conv128 -> flatten -> fully connected 256 with ReLU
    (3x3 convolutions with BN and ReLU; 32x32 inputs give 128 x 8 x 8 = 8,192 inputs to the fully connected layer).

    ``forward_features``: (B, in_channels, 32, 32) -> (B, 256). About 12M multiply-adds per image (a third of
    ``small_cnn``'s at 32x32) and 2.2M weights, most of them in the fully connected layer: unlike ``small_cnn``'s
    global average pool, it fits (and memorises) a few hundred noisy CIFAR images within tens of epochs on a CPU.
    """

    def __init__(self, num_classes: int, in_channels: int = 3, image_size: int = 32) -> None:
        super().__init__()
        side = image_size // 4
        self.features = nn.Sequential(*_conv(in_channels, 32), nn.MaxPool2d(2), *_conv(32, 64), nn.MaxPool2d(2),
                                      *_conv(64, 128), nn.Flatten(), nn.Linear(128 * side * side, 256),
                                      nn.ReLU(inplace=True))
        self.feature_dim = 256
        self.head = nn.Linear(256, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) -> (B, 256) penultimate features."""
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) -> (B, num_classes) logits."""
        return self.head(self.forward_features(x))


def cifar_cnn(num_classes: int, in_channels: int = 3) -> CifarCNN:
    """The CPU benchmark's CNN for 32x32 images."""
    return CifarCNN(num_classes, in_channels)
