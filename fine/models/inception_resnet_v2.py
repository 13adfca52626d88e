"""Inception-ResNet-v2 (Szegedy, Ioffe, Vanhoucke and Alemi, AAAI 2017) for 299 x 299 inputs.

The WebVision network of DivideMix and FINE, trained from scratch. Shapes for a (B, 3, 299, 299) input: stem -> (B, 320,
35, 35); 10 x block35 -> same; Reduction-A -> (B, 1088, 17, 17); 20 x block17 -> same; Reduction-B -> (B, 2080, 8, 8);
10 x block8 -> same; 1x1 conv -> (B, 1536, 8, 8); global average pooling -> (B, 1536). Module names follow the widely
used PyTorch port (``conv2d_1a`` ... ``conv2d_7b``), so its state dicts load with the classifier renamed to ``head``.
"""
from __future__ import annotations

import torch
from torch import nn


class BasicConv2d(nn.Sequential):
    """Convolution (no bias) + BatchNorm (eps 1e-3) + ReLU."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int | tuple[int, int], stride: int = 1,
                 padding: int | tuple[int, int] = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_ch, eps=1e-3)
        self.relu = nn.ReLU(inplace=True)


class Mixed5b(nn.Module):
    """Last stem stage: four parallel branches, (B, 192, 35, 35) -> (B, 320, 35, 35)."""

    def __init__(self) -> None:
        super().__init__()
        self.branch0 = BasicConv2d(192, 96, 1)
        self.branch1 = nn.Sequential(BasicConv2d(192, 48, 1), BasicConv2d(48, 64, 5, padding=2))
        self.branch2 = nn.Sequential(BasicConv2d(192, 64, 1), BasicConv2d(64, 96, 3, padding=1),
                                     BasicConv2d(96, 96, 3, padding=1))
        self.branch3 = nn.Sequential(nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False),
                                     BasicConv2d(192, 64, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)], 1)


class ResidualBlock(nn.Module):
    """Inception-ResNet block: ``relu(x + scale * conv1x1(cat(branches(x))))`` (no ReLU when ``relu`` is False)."""

    def __init__(self, branches: list[nn.Module], branch_ch: int, channels: int, scale: float,
                 relu: bool = True) -> None:
        super().__init__()
        for i, branch in enumerate(branches):
            self.add_module(f"branch{i}", branch)
        self.num_branches = len(branches)
        self.conv2d = nn.Conv2d(branch_ch, channels, 1)
        self.scale = scale
        self.relu = nn.ReLU(inplace=True) if relu else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.cat([getattr(self, f"branch{i}")(x) for i in range(self.num_branches)], 1)
        return self.relu(x + self.scale * self.conv2d(out))


def block35(scale: float = 0.17) -> ResidualBlock:
    """Inception-ResNet-A on (B, 320, 35, 35)."""
    return ResidualBlock([BasicConv2d(320, 32, 1),
                          nn.Sequential(BasicConv2d(320, 32, 1), BasicConv2d(32, 32, 3, padding=1)),
                          nn.Sequential(BasicConv2d(320, 32, 1), BasicConv2d(32, 48, 3, padding=1),
                                        BasicConv2d(48, 64, 3, padding=1))], 128, 320, scale)


def block17(scale: float = 0.10) -> ResidualBlock:
    """Inception-ResNet-B on (B, 1088, 17, 17)."""
    return ResidualBlock([BasicConv2d(1088, 192, 1),
                          nn.Sequential(BasicConv2d(1088, 128, 1), BasicConv2d(128, 160, (1, 7), padding=(0, 3)),
                                        BasicConv2d(160, 192, (7, 1), padding=(3, 0)))], 384, 1088, scale)


def block8(scale: float = 0.20, relu: bool = True) -> ResidualBlock:
    """Inception-ResNet-C on (B, 2080, 8, 8)."""
    return ResidualBlock([BasicConv2d(2080, 192, 1),
                          nn.Sequential(BasicConv2d(2080, 192, 1), BasicConv2d(192, 224, (1, 3), padding=(0, 1)),
                                        BasicConv2d(224, 256, (3, 1), padding=(1, 0)))], 448, 2080, scale, relu)


class Mixed6a(nn.Module):
    """Reduction-A: (B, 320, 35, 35) -> (B, 1088, 17, 17)."""

    def __init__(self) -> None:
        super().__init__()
        self.branch0 = BasicConv2d(320, 384, 3, stride=2)
        self.branch1 = nn.Sequential(BasicConv2d(320, 256, 1), BasicConv2d(256, 256, 3, padding=1),
                                     BasicConv2d(256, 384, 3, stride=2))
        self.branch2 = nn.MaxPool2d(3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x)], 1)


class Mixed7a(nn.Module):
    """Reduction-B: (B, 1088, 17, 17) -> (B, 2080, 8, 8)."""

    def __init__(self) -> None:
        super().__init__()
        self.branch0 = nn.Sequential(BasicConv2d(1088, 256, 1), BasicConv2d(256, 384, 3, stride=2))
        self.branch1 = nn.Sequential(BasicConv2d(1088, 256, 1), BasicConv2d(256, 288, 3, stride=2))
        self.branch2 = nn.Sequential(BasicConv2d(1088, 256, 1), BasicConv2d(256, 288, 3, padding=1),
                                     BasicConv2d(288, 320, 3, stride=2))
        self.branch3 = nn.MaxPool2d(3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)], 1)


class InceptionResNetV2(nn.Module):
    """Inception-ResNet-v2 with ``forward_features`` (B, in_channels, 299, 299) -> (B, 1536) and ``head``.

    The last Inception-ResNet-C block has no ReLU and an unscaled residual (scale 1.0), as in the authors' TF-slim
    implementation and the PyTorch port DivideMix trains; the other nine C blocks use 0.20.
    """

    def __init__(self, num_classes: int, in_channels: int = 3) -> None:
        super().__init__()
        self.conv2d_1a = BasicConv2d(in_channels, 32, 3, stride=2)
        self.conv2d_2a = BasicConv2d(32, 32, 3)
        self.conv2d_2b = BasicConv2d(32, 64, 3, padding=1)
        self.maxpool_3a = nn.MaxPool2d(3, stride=2)
        self.conv2d_3b = BasicConv2d(64, 80, 1)
        self.conv2d_4a = BasicConv2d(80, 192, 3)
        self.maxpool_5a = nn.MaxPool2d(3, stride=2)
        self.mixed_5b = Mixed5b()
        self.repeat = nn.Sequential(*[block35() for _ in range(10)])
        self.mixed_6a = Mixed6a()
        self.repeat_1 = nn.Sequential(*[block17() for _ in range(20)])
        self.mixed_7a = Mixed7a()
        self.repeat_2 = nn.Sequential(*[block8() for _ in range(9)])
        self.block8 = block8(scale=1.0, relu=False)
        self.conv2d_7b = BasicConv2d(2080, 1536, 1)
        self.feature_dim = 1536
        self.head = nn.Linear(self.feature_dim, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, 299, 299) -> (B, 1536) globally average-pooled features."""
        x = self.conv2d_2b(self.conv2d_2a(self.conv2d_1a(x)))
        x = self.conv2d_4a(self.conv2d_3b(self.maxpool_3a(x)))
        x = self.repeat(self.mixed_5b(self.maxpool_5a(x)))
        x = self.repeat_1(self.mixed_6a(x))
        x = self.block8(self.repeat_2(self.mixed_7a(x)))
        return self.conv2d_7b(x).mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, 299, 299) -> (B, num_classes) logits."""
        return self.head(self.forward_features(x))


def inception_resnet_v2(num_classes: int, in_channels: int = 3) -> InceptionResNetV2:
    """Inception-ResNet-v2 (about 54.3M parameters plus a 1536 x num_classes head), randomly initialised."""
    return InceptionResNetV2(num_classes, in_channels)
