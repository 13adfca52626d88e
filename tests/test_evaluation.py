"""predict / topk_accuracy: rows by sample index, one row of logits per network, top-k accuracy as numpy computes it."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from fine.evaluation import evaluation_loader, predict, topk_accuracy

N, D, C = 50, 6, 7
CPU = torch.device("cpu")


@pytest.fixture
def case():
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(N, D, generator=gen), torch.randint(0, C, (N,), generator=gen)
    torch.manual_seed(0)
    models = [torch.nn.Linear(D, C), torch.nn.Linear(D, C)]
    return models, TensorDataset(x, y, torch.arange(N))


def test_predict_orders_rows_by_index_with_one_row_of_logits_per_network(case):
    models, dataset = case
    x, y, _ = dataset.tensors
    models[0].eval()  # each network's mode is restored afterwards
    shuffled = DataLoader(dataset, batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(1))
    logits, labels = predict(models, shuffled, CPU)
    assert logits.shape == (2, N, C) and models[1].training and not models[0].training
    torch.testing.assert_close(logits, torch.stack([m(x) for m in models]).detach())
    assert torch.equal(labels, y)


def test_evaluate_topk_matches_numpy(case):
    models, dataset = case
    x, y, _ = dataset.tensors
    logits, labels = predict(models[:1], evaluation_loader(dataset, batch_size=16, num_workers=0, pin_memory=False),
                             CPU)
    acc1, acc3 = topk_accuracy(logits[0], labels, (1, 3))
    scores = models[0](x).detach().numpy()
    top3 = np.argsort(-scores, axis=1)[:, :3]
    assert acc1 == pytest.approx(100 * np.mean(top3[:, 0] == y.numpy()))
    assert acc3 == pytest.approx(100 * np.mean((top3 == y.numpy()[:, None]).any(1)))
    assert 0 < acc1 < acc3 < 100  # neither trivially 0 nor 100 on this data


def test_bf16_predictions_are_close(case):
    models, dataset = case
    loader = evaluation_loader(dataset, batch_size=16, num_workers=0, pin_memory=False)
    full, _ = predict(models, loader, CPU)
    half, _ = predict(models, loader, CPU, amp="bf16")
    assert half.dtype == torch.float32 and not torch.equal(half, full)
    torch.testing.assert_close(half, full, atol=2e-2, rtol=0)
