"""torchvision's ResNet-50 behind the project's model interface, with offline ImageNet weights."""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn
from torchvision.models import ResNet50_Weights
from torchvision.models.resnet import Bottleneck, ResNet

from fine.errors import UserError


class ResNet50(ResNet):
    """torchvision ResNet-50 whose ``fc`` is replaced by ``head``; parameter names otherwise match torchvision's.

    ``forward_features``: (B, in_channels, H, W) -> (B, 2048) after global average pooling.
    """

    def __init__(self, num_classes: int, in_channels: int = 3) -> None:
        super().__init__(Bottleneck, [3, 4, 6, 3])
        if in_channels != 3:
            self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
            nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
        del self.fc
        self.feature_dim = 512 * Bottleneck.expansion
        self.head = nn.Linear(self.feature_dim, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) -> (B, 2048) penultimate features."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.avgpool(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) -> (B, num_classes) logits."""
        return self.head(self.forward_features(x))


def imagenet_cache_file() -> Path:
    """Where torchvision keeps ``ResNet50_Weights.IMAGENET1K_V1`` in the local torch hub cache."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(ResNet50_Weights.IMAGENET1K_V1.url)


def load_imagenet_weights(model: ResNet50, pretrained: str) -> None:
    """Load torchvision ImageNet weights into ``model`` (its ``head`` keeps its fresh initialisation).

    Parameters
    ----------
    model : the ResNet-50 to fill.
    pretrained : a path to a torchvision ResNet-50 state-dict file, or ``"imagenet"`` for the file in the local
        torch hub cache. Nothing is ever downloaded.
    """
    if pretrained == "imagenet":
        path = imagenet_cache_file()
        if not path.is_file():
            raise UserError(f"ImageNet weights not found at {path}; download them once on a machine with internet "
                            f"(python -c 'import torchvision; torchvision.models.resnet50(weights=\"IMAGENET1K_V1\")') "
                            f"and copy the file there, or pass --pretrained PATH to a state-dict file")
    else:
        path = Path(pretrained)
        if not path.is_file():
            raise UserError(f"--pretrained {pretrained}: no such file; pass a torchvision ResNet-50 state-dict file "
                            f"or 'imagenet'")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise UserError(f"cannot read pretrained weights {path} ({type(err).__name__}); pass a file written by "
                        f"torch.save(model.state_dict())") from err
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise UserError(f"pretrained weights {path} hold a {type(state).__name__}, not a state dict of named tensors")
    own = {k: v for k, v in model.state_dict().items() if not k.startswith("head.")}
    backbone = {k: v for k, v in state.items() if not k.startswith(("fc.", "head."))}
    missing = sorted(set(own) - set(backbone))
    unexpected = sorted(set(backbone) - set(own))
    misshapen = sorted(k for k in set(own) & set(backbone)
                       if not isinstance(backbone[k], torch.Tensor) or backbone[k].shape != own[k].shape)
    if missing or unexpected or misshapen:
        raise UserError(f"pretrained weights {path} do not fit torchvision's ResNet-50 (missing {missing[:3]}, "
                        f"unexpected {unexpected[:3]}, wrong shape {misshapen[:3]}); pass a torchvision ResNet-50 "
                        f"state dict")
    model.load_state_dict(backbone, strict=False)


def resnet50(num_classes: int, in_channels: int = 3, pretrained: str | None = None) -> ResNet50:
    """ResNet-50 (about 23.5M parameters plus a 2048 x num_classes head), optionally with ImageNet weights."""
    model = ResNet50(num_classes, in_channels)
    if pretrained is not None:
        if in_channels != 3:
            raise UserError(f"pretrained ResNet-50 weights expect 3 input channels, not {in_channels}")
        load_imagenet_weights(model, pretrained)
    return model
