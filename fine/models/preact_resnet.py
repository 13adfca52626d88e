"""PreAct ResNet-18 for 32x32 inputs in DivideMix's layout (LiJunnan1992/DivideMix: PreResNet.py), its backbone.

The stem is conv3x3 + BN + ReLU; each block pre-activates (BN-ReLU) before its convolutions and its projection
shortcut (a bias-free 1x1 conv, no BN) reads the pre-activated input; layer 4's output is average-pooled with no
final BN-ReLU, so the penultimate features (what F-DivideMix scores) can be negative. A DivideMix checkpoint loads
after renaming its ``linear.*`` keys to ``head.*`` (:func:`from_dividemix_state_dict`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PreActBlock(nn.Module):
    """BN-ReLU-conv3x3, BN-ReLU-conv3x3, plus the shortcut (identity, or a 1x1 conv of the pre-activated input)."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.shortcut = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet(nn.Module):
    """Pre-activation ResNet with a CIFAR stem (one 3x3 conv + BN + ReLU, stride 1, no max-pool).

    ``forward_features``: (B, in_channels, H, W) -> (B, 512), layer 4's output averaged over space.
    """

    def __init__(self, num_blocks: tuple[int, int, int, int], num_classes: int, in_channels: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        layers, in_planes = [], 64
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), num_blocks)):
            blocks = []
            for j in range(n):
                blocks.append(PreActBlock(in_planes, planes, stride=2 if i > 0 and j == 0 else 1))
                in_planes = planes
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.feature_dim = in_planes
        self.head = nn.Linear(in_planes, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) -> (B, 512) penultimate features."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return F.adaptive_avg_pool2d(out, 1).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) -> (B, num_classes) logits."""
        return self.head(self.forward_features(x))


def preact_resnet18(num_classes: int, in_channels: int = 3) -> PreActResNet:
    """PreAct ResNet-18 (blocks [2, 2, 2, 2], 11,171,274 parameters with a 10-class head, as DivideMix's)."""
    return PreActResNet((2, 2, 2, 2), num_classes, in_channels)


def from_dividemix_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A DivideMix ``PreResNet18`` state dict with its keys renamed for :class:`PreActResNet` (``linear`` ->
    ``head``; every other key is the same)."""
    return {("head" + k[len("linear"):] if k.startswith("linear.") else k): v for k, v in state.items()}
