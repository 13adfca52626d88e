"""Model factory. Every model exposes ``forward_features(x) -> (B, D)``, ``head: nn.Linear(D, C)`` and ``feature_dim``,
and ``forward(x) == head(forward_features(x))``.

Image networks take (B, C, H, W); ``mlp`` takes tables (B, D) and ``cnn1d`` signals (B, C, L).
"""
from __future__ import annotations

from torch import nn

from fine.errors import UserError
from fine.models.cifar_cnn import cifar_cnn
from fine.models.cnn1d import cnn1d
from fine.models.inception_resnet_v2 import inception_resnet_v2
from fine.models.mlp import mlp
from fine.models.preact_resnet import preact_resnet18
from fine.models.resnet_cifar import init_weights, resnet18, resnet34
from fine.models.small_cnn import small_cnn
from fine.models.torchvision_models import resnet50

ARCHS = ("preact_resnet18", "resnet18", "resnet34", "small_cnn", "cifar_cnn", "resnet50", "inception_resnet_v2", "mlp",
         "cnn1d")

# Dimensions of one input sample each architecture takes: 3 for images (C, H, W), 2 for signals (C, L), 1 for table
# rows (D,).
SAMPLE_DIMS = {"preact_resnet18": 3, "resnet18": 3, "resnet34": 3, "small_cnn": 3, "cifar_cnn": 3, "resnet50": 3,
               "inception_resnet_v2": 3, "mlp": 1, "cnn1d": 2}
_SAMPLE_NAMES = {3: "images (C, H, W)", 2: "signals (C, L)", 1: "table rows (D,)"}

# Input channels each architecture is built for when the caller does not say (mlp: the feature count is required).
_DEFAULT_IN_CHANNELS = {"preact_resnet18": 3, "resnet18": 3, "resnet34": 3, "small_cnn": 1, "cifar_cnn": 3,
                        "resnet50": 3, "inception_resnet_v2": 3, "cnn1d": 1}


def _leading_size(arch: str, in_channels: int | None, input_shape: tuple[int, ...] | None) -> int:
    """The size of a sample's first dimension (channels, or features for ``mlp``), checked against ``arch``."""
    if input_shape is not None:
        input_shape = tuple(input_shape)
        if len(input_shape) != SAMPLE_DIMS[arch]:
            fits = [a for a in ARCHS if SAMPLE_DIMS[a] == len(input_shape)]
            fix = f"use --arch {' or '.join(fits)}" if fits else "no architecture takes them"
            raise UserError(f"--arch {arch} takes {_SAMPLE_NAMES[SAMPLE_DIMS[arch]]}, but the samples have shape "
                            f"{input_shape}; {fix}")
        if in_channels is not None and in_channels != input_shape[0]:
            raise ValueError(f"in_channels={in_channels} contradicts input_shape={input_shape}; pass one of them")
        return input_shape[0]
    if in_channels is not None:
        return in_channels
    if arch not in _DEFAULT_IN_CHANNELS:
        raise ValueError(f"{arch} needs the feature count: pass input_shape=(D,) or in_channels=D")
    return _DEFAULT_IN_CHANNELS[arch]


# Architectures whose weights --init chooses (the others initialise themselves: torchvision's, or a pretrained file).
INITIALISED = ("preact_resnet18", "resnet18", "resnet34", "small_cnn", "cifar_cnn")
INITS = ("pytorch", "kaiming")


def create_model(arch: str, num_classes: int, *, pretrained: str | None = None, in_channels: int | None = None,
                 input_shape: tuple[int, ...] | None = None, init: str = "pytorch") -> nn.Module:
    """Build a network by name.

    Parameters
    ----------
    arch : one of :data:`ARCHS`.
    num_classes : number of output logits C.
    pretrained : resnet50 only: a torchvision ImageNet state-dict file, or ``"imagenet"`` for torchvision's
        ``IMAGENET1K_V1`` file in the local torch hub cache (never downloaded). The head is freshly initialised.
    in_channels : size of a sample's first dimension: image or signal channels, or a table's feature count D for
        ``mlp``. Default 1 for ``small_cnn`` (8x8 digits) and ``cnn1d``, 3 for the other image networks; ``mlp``
        has none.
    input_shape : the shape of one sample, (C, H, W), (C, L) or (D,), e.g. ``tuple(dataset[0][0].shape)``; sets
        ``in_channels`` and is checked against the kind of input ``arch`` takes (:data:`SAMPLE_DIMS`).
    init : for :data:`INITIALISED` architectures, "pytorch" (each layer's default, as FINE's and DivideMix's
        published networks) or "kaiming" (:func:`~fine.models.resnet_cifar.init_weights`, as the published
        Co-teaching trainers re-initialise theirs).

    Returns
    -------
    nn.Module mapping a batch (B, *input_shape) to (B, C) logits.
    """
    if arch not in ARCHS:
        raise UserError(f"unknown arch {arch!r}; choose one of {', '.join(ARCHS)}")
    if num_classes < 1:
        raise UserError(f"num_classes must be at least 1, got {num_classes}")
    in_channels = _leading_size(arch, in_channels, input_shape)
    if pretrained == "none":
        pretrained = None
    if arch == "resnet50":
        return resnet50(num_classes, in_channels, pretrained=pretrained)
    if pretrained is not None:
        raise UserError(f"--pretrained applies to resnet50 only, not {arch}; drop it or use --arch resnet50")
    if init not in INITS:
        raise UserError(f"unknown --init {init!r}; choose one of {', '.join(INITS)}")
    builders = {"preact_resnet18": preact_resnet18, "resnet18": resnet18, "resnet34": resnet34,
                "small_cnn": small_cnn, "cifar_cnn": cifar_cnn, "inception_resnet_v2": inception_resnet_v2, "mlp": mlp,
                "cnn1d": cnn1d}
    model = builders[arch](num_classes, in_channels)
    if init == "kaiming" and arch in INITIALISED:
        init_weights(model)
    return model
