"""Feature extraction writes each sample's outputs to its own row, in any loader order and precision."""
from __future__ import annotations

import pytest
import torch

from fine import features as features_module
from fine.features import extract_features
from fine.models import create_model

N = 40


def batches(images: torch.Tensor, order: torch.Tensor, size: int = 16):
    """``(x, y, index)`` batches of ``images`` visited in ``order``."""
    for chunk in order.split(size):
        yield images[chunk], torch.zeros(len(chunk), dtype=torch.long), chunk


@pytest.fixture
def model_and_images():
    torch.manual_seed(0)
    model = create_model("small_cnn", 10)
    images = torch.randn(N, 1, 8, 8)
    return model, images


def test_rows_follow_sample_index_not_loader_order(model_and_images):
    model, images = model_and_images
    model.train()
    order = torch.randperm(N, generator=torch.Generator().manual_seed(1))
    features, logits = extract_features(model, batches(images, order), torch.arange(N), torch.device("cpu"))
    assert model.training  # mode restored
    model.eval()
    with torch.no_grad():
        expected_features = model.forward_features(images)
        expected_logits = model(images)
    torch.testing.assert_close(features, expected_features)
    torch.testing.assert_close(logits, expected_logits)


def test_subset_rows_follow_the_subset_order(model_and_images):
    model, images = model_and_images
    full, full_logits = extract_features(model, batches(images, torch.arange(N)), torch.arange(N), "cpu")
    subset = torch.tensor([31, 4, 17, 0, 22])
    visit = subset[torch.tensor([3, 0, 4, 1, 2])]  # the loader's order differs from the subset's
    part, part_logits = extract_features(model, batches(images, visit, size=2), subset, "cpu")
    assert part.shape == (5, full.shape[1])
    torch.testing.assert_close(part, full[subset])
    torch.testing.assert_close(part_logits, full_logits[subset])


def test_bf16_outputs_are_float32_and_close(model_and_images):
    model, images = model_and_images
    full, full_logits = extract_features(model, batches(images, torch.arange(N)), torch.arange(N), "cpu")
    half, half_logits = extract_features(model, batches(images, torch.arange(N)), torch.arange(N), "cpu", amp="bf16")
    assert half.dtype == half_logits.dtype == torch.float32
    assert not torch.equal(half, full)  # the forward pass did run in bf16
    cos = torch.nn.functional.cosine_similarity(half, full, dim=1)
    assert cos.min() > 0.99


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("budget", [features_module.DEVICE_BUFFER_BYTES, 0])  # on-device buffers, then host rows
def test_cuda_paths_match_cpu(model_and_images, monkeypatch, budget):
    model, images = model_and_images
    expected = extract_features(model, batches(images, torch.arange(N)), torch.arange(N), "cpu")
    monkeypatch.setattr(features_module, "DEVICE_BUFFER_BYTES", budget)
    cuda = torch.device("cuda")
    got = extract_features(model.to(cuda), batches(images.to(cuda), torch.arange(N, device=cuda)), torch.arange(N),
                           cuda)
    for a, b in zip(got, expected):
        assert a.device.type == ("cuda" if budget else "cpu")  # on the device where they fit, else on the host
        torch.testing.assert_close(a.cpu(), b, rtol=1e-3, atol=1e-3)
