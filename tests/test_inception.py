"""Inception-ResNet-v2: output shapes at 299 x 299, the published size, the feature/head contract, registration."""
from __future__ import annotations

import pytest
import torch

from fine.errors import UserError
from fine.models import ARCHS, create_model
from fine.models.inception_resnet_v2 import InceptionResNetV2


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_model("inception_resnet_v2", 50).eval()


def test_registered_and_built(model):
    assert "inception_resnet_v2" in ARCHS
    assert isinstance(model, InceptionResNetV2)
    assert model.feature_dim == 1536 and model.head.in_features == 1536 and model.head.out_features == 50


def test_parameter_count(model):
    # 55.84M with a 1000-way classifier (the published figure), so 54.31M for the backbone alone.
    backbone = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("head."))
    assert 54.2e6 <= backbone <= 54.4e6
    assert sum(p.numel() for p in create_model("inception_resnet_v2", 1000).parameters()) == pytest.approx(
        55.84e6, rel=1e-3)


def test_stage_shapes_and_forward_matches_head(model):
    x = torch.randn(1, 3, 299, 299)
    shapes = {}
    hooks = [getattr(model, name).register_forward_hook(
        lambda _m, _i, out, name=name: shapes.__setitem__(name, tuple(out.shape)))
        for name in ("mixed_5b", "repeat", "mixed_6a", "repeat_1", "mixed_7a", "block8", "conv2d_7b")]
    with torch.no_grad():
        feats = model.forward_features(x)
        logits = model.head(feats)
    for hook in hooks:
        hook.remove()
    assert shapes == {"mixed_5b": (1, 320, 35, 35), "repeat": (1, 320, 35, 35), "mixed_6a": (1, 1088, 17, 17),
                      "repeat_1": (1, 1088, 17, 17), "mixed_7a": (1, 2080, 8, 8), "block8": (1, 2080, 8, 8),
                      "conv2d_7b": (1, 1536, 8, 8)}
    assert feats.shape == (1, 1536) and logits.shape == (1, 50)
    assert torch.isfinite(logits).all()
    # forward == head(forward_features), checked on a small input that still passes every stride (75 px -> 1 x 1).
    small = torch.randn(2, 3, 75, 75)
    with torch.no_grad():
        torch.testing.assert_close(model(small), model.head(model.forward_features(small)))


def test_residual_scales_and_last_block():
    net = InceptionResNetV2(10)
    assert [b.scale for b in net.repeat] == [0.17] * 10 and len(net.repeat_1) == 20
    assert all(b.scale == 0.10 for b in net.repeat_1)
    assert [b.scale for b in net.repeat_2] == [0.20] * 9
    assert net.block8.scale == 1.0 and isinstance(net.block8.relu, torch.nn.Identity)
    assert all(isinstance(b.relu, torch.nn.ReLU) for b in net.repeat_2)


def test_no_pretrained_weights():
    with pytest.raises(UserError, match="resnet50 only"):
        create_model("inception_resnet_v2", 50, pretrained="imagenet")
