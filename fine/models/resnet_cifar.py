"""ResNet-18/34 with a CIFAR stem (3x3 conv, stride 1, no max-pool): FINE's sample-selection backbones
(Kthyeon/FINE_official: dynamic_selection/model/CIFAR_ResNet_Zoo.py)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def init_weights(model: nn.Module) -> None:
    """Kaiming-normal (fan-out, ReLU) convolutions; batch-norm scale 1, shift 0. Linear layers keep PyTorch's init.

    What the published Co-teaching trainers do to their networks (Kthyeon/FINE_official:
    dynamic_selection/trainer/coteaching_trainer.py:46-53); ``create_model(init="kaiming")``.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU, conv3x3-BN, plus the shortcut (1x1 conv + BN when shapes change), then ReLU."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet of basic blocks for small images.

    ``forward_features``: (B, in_channels, H, W) -> (B, 512) after global average pooling.
    """

    def __init__(self, num_blocks: tuple[int, int, int, int], num_classes: int, in_channels: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        layers, in_planes = [], 64
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), num_blocks)):
            blocks = []
            for j in range(n):
                blocks.append(BasicBlock(in_planes, planes, stride=2 if i > 0 and j == 0 else 1))
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


def resnet18(num_classes: int, in_channels: int = 3) -> CifarResNet:
    """ResNet-18 with a CIFAR stem (blocks [2, 2, 2, 2]): FINE_official's Co-teaching+ CIFAR-10 network."""
    return CifarResNet((2, 2, 2, 2), num_classes, in_channels)


def resnet34(num_classes: int, in_channels: int = 3) -> CifarResNet:
    """ResNet-34 with a CIFAR stem (blocks [3, 4, 6, 3], about 21.3M parameters with a 10-class head)."""
    return CifarResNet((3, 4, 6, 3), num_classes, in_channels)
