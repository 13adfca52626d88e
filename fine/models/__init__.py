"""Model factory. Every model exposes ``forward_features(x) -> (B, D)``, ``head: nn.Linear(D, C)`` and ``feature_dim``,
and ``forward(x) == head(forward_features(x))``."""
from __future__ import annotations

from torch import nn

from fine.errors import UserError
from fine.models.inception_resnet_v2 import inception_resnet_v2
from fine.models.preact_resnet import preact_resnet18
from fine.models.resnet_cifar import resnet34
from fine.models.small_cnn import small_cnn
from fine.models.torchvision_models import resnet50

ARCHS = ("preact_resnet18", "resnet34", "small_cnn", "resnet50", "inception_resnet_v2")

# Input channels each architecture is built for when the caller does not say.
_DEFAULT_IN_CHANNELS = {"preact_resnet18": 3, "resnet34": 3, "small_cnn": 1, "resnet50": 3,
                       "inception_resnet_v2": 3}


def create_model(arch: str, num_classes: int, *, pretrained: str | None = None,
                 in_channels: int | None = None) -> nn.Module:
    """Build a network by name.

    Parameters
    ----------
    arch : one of :data:`ARCHS`.
    num_classes : number of output logits C.
    pretrained : resnet50 only: a torchvision ImageNet state-dict file, or ``"imagenet"`` for torchvision's
        ``IMAGENET1K_V1`` file in the local torch hub cache (never downloaded). The head is freshly initialised.
    in_channels : image channels; default 1 for ``small_cnn`` (8x8 digits) and 3 otherwise.

    Returns
    -------
    nn.Module mapping (B, in_channels, H, W) images to (B, C) logits.
    """
    if arch not in ARCHS:
        raise UserError(f"unknown arch {arch!r}; choose one of {', '.join(ARCHS)}")
    if num_classes < 1:
        raise UserError(f"num_classes must be at least 1, got {num_classes}")
    if in_channels is None:
        in_channels = _DEFAULT_IN_CHANNELS[arch]
    if pretrained == "none":
        pretrained = None
    if arch == "resnet50":
        return resnet50(num_classes, in_channels, pretrained=pretrained)
    if pretrained is not None:
        raise UserError(f"--pretrained applies to resnet50 only, not {arch}; drop it or use --arch resnet50")
    builders = {"preact_resnet18": preact_resnet18, "resnet34": resnet34, "small_cnn": small_cnn,
                "inception_resnet_v2": inception_resnet_v2}
    return builders[arch](num_classes, in_channels)
