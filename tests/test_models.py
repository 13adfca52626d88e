"""Models: shapes, the feature/head contract, sizes, gradients, deterministic init, the input kind each arch takes, a
small CNN that learns digits, pretrained loading."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from sklearn.datasets import load_digits

from fine.errors import UserError
from fine.models import ARCHS, create_model
from fine.models.torchvision_models import imagenet_cache_file

# arch -> (input shape, feature dim, backbone parameters in millions (low, high)), head excluded.
SPECS = {
    "preact_resnet18": ((3, 32, 32), 512, (11.1, 11.3)),
    "resnet18": ((3, 32, 32), 512, (11.1, 11.3)),
    "resnet34": ((3, 32, 32), 512, (21.2, 21.4)),
    "resnet50": ((3, 32, 32), 2048, (23.4, 23.6)),
    "small_cnn": ((1, 8, 8), 128, (0.02, 0.15)),
    "cifar_cnn": ((3, 32, 32), 256, (2.1, 2.3)),
    "inception_resnet_v2": ((3, 75, 75), 1536, (54.2, 54.4)),
    "mlp": ((20,), 128, (0.09, 0.12)),
    "cnn1d": ((2, 50), 128, (0.08, 0.1)),
}


def test_specs_cover_every_arch():
    assert set(SPECS) == set(ARCHS)


@pytest.mark.parametrize("arch", ARCHS)
def test_shapes_contract_size_and_gradients(arch):
    torch.manual_seed(0)
    shape, dim, (lo, hi) = SPECS[arch]
    model = create_model(arch, 7, input_shape=shape)
    assert model.feature_dim == dim
    assert isinstance(model.head, torch.nn.Linear) and model.head.in_features == dim and model.head.out_features == 7
    backbone = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("head."))
    assert lo * 1e6 <= backbone <= hi * 1e6

    x = torch.randn(2, *shape)
    model.eval()
    with torch.no_grad():
        feats = model.forward_features(x)
        logits = model(x)
    assert feats.shape == (2, dim) and logits.shape == (2, 7)
    torch.testing.assert_close(logits, model.head(feats))

    model.train()
    model(x).logsumexp(dim=1).sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert all(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("arch", ["mlp", "cnn1d"])
def test_init_is_deterministic_from_torch_seed(arch):
    shape = SPECS[arch][0]
    torch.manual_seed(3)
    one = create_model(arch, 4, input_shape=shape).state_dict()
    torch.manual_seed(3)
    two = create_model(arch, 4, input_shape=shape).state_dict()
    torch.manual_seed(4)
    three = create_model(arch, 4, input_shape=shape).state_dict()
    assert all(torch.equal(one[k], two[k]) for k in one)
    assert not torch.equal(one["head.weight"], three["head.weight"])


def test_mlp_and_cnn1d_shapes():
    torch.manual_seed(0)
    table = create_model("mlp", 3, in_channels=13)  # in_channels is a table's feature count
    assert table(torch.randn(5, 13)).shape == (5, 3) and table.forward_features(torch.randn(5, 13)).min() >= 0
    signal = create_model("cnn1d", 4, input_shape=(3, 100))
    for length in (1, 7, 100, 333):  # global pooling: any length
        assert signal(torch.randn(2, 3, length)).shape == (2, 4)
    assert create_model("cnn1d", 2)(torch.randn(2, 1, 16)).shape == (2, 2)  # one channel by default


def test_one_sample_training_batch_uses_running_statistics():
    torch.manual_seed(0)
    model = create_model("mlp", 3, input_shape=(13,))
    model(torch.randn(16, 13) * 3 + 1)  # a training batch moves the running statistics
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(1, 13)
    out = model(x)  # plain batch norm raises on one value per channel
    out.sum().backward()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    model.eval()
    torch.testing.assert_close(out, model(x))
    signal = create_model("cnn1d", 3, input_shape=(2, 3))  # one time step left after the pools
    signal(torch.randn(1, 2, 3)).sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in signal.parameters())


@pytest.mark.parametrize("arch,shape,message", [
    ("mlp", (2, 50), "--arch mlp takes table rows \\(D,\\), but the samples have shape \\(2, 50\\); use --arch cnn1d"),
    ("cnn1d", (13,), "--arch cnn1d takes signals \\(C, L\\).*use --arch mlp"),
    ("resnet34", (13,), "--arch resnet34 takes images \\(C, H, W\\).*use --arch mlp"),
    ("mlp", (3, 32, 32), "use --arch preact_resnet18 or resnet18 or resnet34"),
])
def test_arch_refuses_other_input_kinds(arch, shape, message):
    with pytest.raises(UserError, match=message) as err:
        create_model(arch, 3, input_shape=shape)
    assert "\n" not in str(err.value)


def test_input_shape_and_in_channels_must_agree():
    with pytest.raises(ValueError, match="contradicts"):
        create_model("mlp", 3, in_channels=12, input_shape=(13,))
    with pytest.raises(ValueError, match="needs the feature count"):
        create_model("mlp", 3)


def test_in_channels_and_bad_input():
    assert create_model("resnet34", 10, in_channels=1)(torch.randn(2, 1, 16, 16)).shape == (2, 10)
    assert create_model("small_cnn", 3, in_channels=3)(torch.randn(2, 3, 8, 8)).shape == (2, 3)
    with pytest.raises(UserError, match="choose one of preact_resnet18, resnet18, resnet34"):
        create_model("resnet101", 10)
    with pytest.raises(UserError, match="unknown --init 'xavier'"):
        create_model("resnet34", 10, init="xavier")
    with pytest.raises(UserError, match="resnet50 only"):
        create_model("resnet34", 10, pretrained="imagenet")


def test_small_cnn_learns_clean_digits():
    torch.manual_seed(0)
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = (x - x.mean()) / x.std()
    y = torch.tensor(digits.target)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    train, test = perm[:1400], perm[1400:]
    model = create_model("small_cnn", 10)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    for _ in range(20):
        model.train()
        order = train[torch.randperm(len(train))]
        for batch in order.split(64):
            loss = F.cross_entropy(model(x[batch]), y[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(x[test]).argmax(1) == y[test]).float().mean().item()
    assert acc >= 0.9


def test_resnet50_loads_a_torchvision_state_dict(tmp_path):
    torch.manual_seed(0)
    reference = torchvision.models.resnet50(weights=None)
    path = tmp_path / "resnet50.pth"
    torch.save(reference.state_dict(), path)
    model = create_model("resnet50", 5, pretrained=str(path))
    state = model.state_dict()
    for key, value in reference.state_dict().items():
        if not key.startswith("fc."):
            torch.testing.assert_close(state[key], value, rtol=0, atol=0)
    assert model.head.out_features == 5
    reference.fc = torch.nn.Identity()
    reference.eval()
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.forward_features(x), reference(x))


def test_resnet50_imagenet_reads_the_hub_cache_only(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cached = imagenet_cache_file()
    assert cached.parent == tmp_path / "hub" / "checkpoints"
    with pytest.raises(UserError, match=cached.name):
        create_model("resnet50", 10, pretrained="imagenet")
    cached.parent.mkdir(parents=True)
    reference = torchvision.models.resnet50(weights=None)
    torch.save(reference.state_dict(), cached)
    model = create_model("resnet50", 10, pretrained="imagenet")
    torch.testing.assert_close(model.conv1.weight, reference.conv1.weight, rtol=0, atol=0)


def test_resnet50_bad_pretrained_files(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        create_model("resnet50", 10, pretrained=str(tmp_path / "missing.pth"))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="cannot read"):
        create_model("resnet50", 10, pretrained=str(junk))
    listing = tmp_path / "list.pth"
    torch.save([1, 2], listing)
    with pytest.raises(UserError, match="not a state dict"):
        create_model("resnet50", 10, pretrained=str(listing))
    other = tmp_path / "resnet34.pth"
    torch.save(create_model("resnet34", 10).state_dict(), other)
    with pytest.raises(UserError, match="do not fit"):
        create_model("resnet50", 10, pretrained=str(other))
    with pytest.raises(UserError, match="3 input channels"):
        create_model("resnet50", 10, pretrained=str(other), in_channels=1)


def test_head_is_fresh_not_imagenet(tmp_path):
    reference = torchvision.models.resnet50(weights=None, num_classes=10)
    path = tmp_path / "w.pth"
    torch.save(reference.state_dict(), path)
    model = create_model("resnet50", 10, pretrained=str(path))
    assert not np.allclose(model.head.weight.detach().numpy(), reference.fc.weight.detach().numpy())


def dividemix_preresnet18_keys() -> dict[str, tuple[int, ...]]:
    """The state-dict keys and shapes of DivideMix's PreResNet18(num_classes=10) (LiJunnan1992/DivideMix:
    PreResNet.py): stem conv + BN, blocks [2, 2, 2, 2] with a 1x1 shortcut conv in ``shortcut.0``, ``linear``."""
    bn = lambda prefix, c: {f"{prefix}.weight": (c,), f"{prefix}.bias": (c,), f"{prefix}.running_mean": (c,),  # noqa: E731
                            f"{prefix}.running_var": (c,), f"{prefix}.num_batches_tracked": ()}
    keys = {"conv1.weight": (64, 3, 3, 3), **bn("bn1", 64)}
    in_planes = 64
    for layer, planes in enumerate((64, 128, 256, 512), start=1):
        for block in (0, 1):
            p = f"layer{layer}.{block}"
            keys.update({**bn(f"{p}.bn1", in_planes), **bn(f"{p}.bn2", planes)})
            keys[f"{p}.conv1.weight"] = (planes, in_planes, 3, 3)
            keys[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
            if in_planes != planes:
                keys[f"{p}.shortcut.0.weight"] = (planes, in_planes, 1, 1)
            in_planes = planes
    keys.update({"linear.weight": (10, 512), "linear.bias": (10,)})
    return keys


def test_preact_resnet18_has_dividemix_layout_and_loads_its_checkpoints():
    from fine.models.preact_resnet import from_dividemix_state_dict

    torch.manual_seed(0)
    theirs = {k: torch.randn(shape) if shape else torch.tensor(7) for k, shape in dividemix_preresnet18_keys().items()}
    model = create_model("preact_resnet18", 10)
    assert len(theirs) == len(model.state_dict()) == 107
    model.load_state_dict(from_dividemix_state_dict(theirs), strict=True)  # one to one, up to linear -> head
    assert torch.equal(model.head.weight, theirs["linear.weight"])
    assert sum(p.numel() for p in model.parameters()) == 11_171_274  # DivideMix's count
    # No BN-ReLU after layer 4: the pooled features are the raw block output, negative entries included.
    model = create_model("preact_resnet18", 10).eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        out = model.layer4(model.layer3(model.layer2(model.layer1(F.relu(model.bn1(model.conv1(x)))))))
        torch.testing.assert_close(model.forward_features(x), out.mean((2, 3)))
    assert (model.forward_features(x) < 0).any()


@pytest.mark.parametrize("arch", ["resnet34", "preact_resnet18", "small_cnn"])
def test_kaiming_init_reinitialises_the_convolutions_only(arch):
    torch.manual_seed(0)
    default = create_model(arch, 10, init="pytorch")
    torch.manual_seed(0)
    kaiming = create_model(arch, 10, init="kaiming")
    conv = next(n for n, m in kaiming.named_modules() if isinstance(m, torch.nn.Conv2d))
    w = dict(kaiming.named_parameters())[f"{conv}.weight"]
    fan_out = w.shape[0] * w.shape[2] * w.shape[3]
    assert w.std().item() == pytest.approx((2.0 / fan_out) ** 0.5, rel=0.15)  # Kaiming-normal, fan out, ReLU
    assert not torch.equal(w, dict(default.named_parameters())[f"{conv}.weight"])
