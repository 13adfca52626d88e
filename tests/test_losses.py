"""Losses: CE, GCE, SCE against numpy formulas; ELR's index-keyed memory, its update, checkpointing and syncing."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fine.errors import UserError
from fine.losses import HYPERPARAMETERS, LOSSES, build_loss

C = 6


def _batch(b: int = 16, seed: int = 0, scale: float = 3.0):
    g = torch.Generator().manual_seed(seed)
    logits = scale * torch.randn(b, C, generator=g, dtype=torch.float64).float()
    targets = torch.randint(0, C, (b,), generator=g)
    return logits, targets


def _np_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _np_ce(logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    return -np.log(_np_softmax(logits)[np.arange(len(y)), y])


def _close(a: torch.Tensor, b: np.ndarray, tol: float = 1e-5) -> None:
    np.testing.assert_allclose(a.detach().double().numpy(), b, rtol=tol, atol=tol)


def test_ce_matches_numpy():
    logits, y = _batch()
    loss = build_loss("ce", num_classes=C, num_samples=100)
    ref = _np_ce(logits.double().numpy(), y.numpy())
    _close(loss.per_sample(logits, y, torch.arange(16)), ref)
    _close(loss(logits, y, torch.arange(16)), ref.mean())


@pytest.mark.parametrize("q", [0.3, 0.7, 1.0])
def test_gce_matches_numpy(q):
    logits, y = _batch(seed=1)
    loss = build_loss("gce", num_classes=C, num_samples=100, q=q)
    p_y = _np_softmax(logits.double().numpy())[np.arange(16), y.numpy()]
    ref = (1 - p_y ** q) / q
    _close(loss.per_sample(logits, y, torch.arange(16)), ref)
    _close(loss(logits, y, torch.arange(16)), ref.mean())


def test_gce_with_tiny_q_is_cross_entropy():
    logits, y = _batch(seed=2)
    gce = build_loss("gce", num_classes=C, num_samples=100, q=1e-5).per_sample(logits, y, torch.arange(16))
    ce = build_loss("ce", num_classes=C, num_samples=100).per_sample(logits, y, torch.arange(16))
    torch.testing.assert_close(gce, ce, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("alpha", "beta", "a"), [(0.1, 1.0, None), (1.0, 0.4, None), (0.1, 1.0, np.log(1e-4))])
def test_sce_matches_numpy(alpha, beta, a):
    """FINE_official clamps the one-hot at exp(-4) (loss/sce.py:17,29), the default; SCE's authors at 1e-4."""
    logits, y = _batch(seed=3, scale=8.0)  # large logits so some probabilities fall under the 1e-7 clamp
    loss = build_loss("sce", num_classes=C, num_samples=100, alpha=alpha, beta=beta, a=a)
    x, yn = logits.double().numpy(), y.numpy()
    prob = np.clip(_np_softmax(x), 1e-7, 1.0)
    onehot = np.eye(C)[yn]
    rce = -(prob * np.log(np.clip(onehot, np.exp(-4.0) if a is None else 1e-4, 1.0))).sum(axis=1)
    ref = alpha * _np_ce(x, yn) + beta * rce
    _close(loss.per_sample(logits, y, torch.arange(16)), ref, tol=1e-4)
    _close(loss(logits, y, torch.arange(16)), ref.mean(), tol=1e-4)


def _np_elr_step(memory: np.ndarray, logits: np.ndarray, y: np.ndarray, index: np.ndarray, beta: float, lam: float):
    """One ELR step in numpy: returns the updated memory (copy) and the mean loss."""
    prob = np.clip(_np_softmax(logits), 1e-4, 1 - 1e-4)
    memory = memory.copy()
    memory[index] = beta * memory[index] + (1 - beta) * prob / prob.sum(axis=1, keepdims=True)
    reg = np.log(1 - (memory[index] * prob).sum(axis=1))
    return memory, (_np_ce(logits, y) + lam * reg).mean()


def test_elr_update_and_loss_match_manual_computation():
    n, beta, lam = 20, 0.7, 3.0
    loss = build_loss("elr", num_classes=C, num_samples=n, beta=beta, **{"lambda": lam})
    assert loss.target.shape == (n, C) and not loss.target.any()
    memory = np.zeros((n, C))
    rng = np.random.default_rng(0)
    for step in range(4):
        logits, y = _batch(b=8, seed=10 + step)
        index = rng.choice(n, size=8, replace=False)
        out = loss(logits, y, torch.from_numpy(index))
        memory, ref = _np_elr_step(memory, logits.double().numpy(), y.numpy(), index, beta, lam)
        _close(out, ref)
        _close(loss.target, memory)
    # per_sample reads the memory without changing it.
    before = loss.target.clone()
    per = loss.per_sample(logits, y, torch.from_numpy(index))
    assert per.shape == (8,) and torch.equal(loss.target, before)


def test_elr_memory_is_keyed_by_dataset_index_not_subset_position():
    n = 10
    subset_a = torch.tensor([0, 1, 2, 3, 4, 5])
    subset_b = torch.tensor([7, 3, 9, 1])  # samples 3 and 1 sit at other positions than in subset A
    logits_by_index = {i: torch.randn(C, generator=torch.Generator().manual_seed(i)) for i in range(n)}
    y = torch.zeros(n, dtype=torch.long)

    loss = build_loss("elr", num_classes=C, num_samples=n)
    for subset in (subset_a, subset_b):
        logits = torch.stack([logits_by_index[int(i)] for i in subset])
        loss(logits, y[subset], subset)

    beta = 0.7
    for i in range(n):
        prob = torch.softmax(logits_by_index[i], 0).clamp(1e-4, 1 - 1e-4)
        step = (1 - beta) * prob / prob.sum()
        visits = int(i in subset_a.tolist()) + int(i in subset_b.tolist())
        expected = sum(beta ** k for k in range(visits)) * step if visits else torch.zeros(C)
        torch.testing.assert_close(loss.target[i], expected)


def test_elr_state_dict_round_trip_and_gradients(tmp_path):
    n = 12
    loss = build_loss("elr", num_classes=C, num_samples=n, beta=0.9, **{"lambda": 7.0})
    logits, y = _batch(b=5, seed=4)
    logits.requires_grad_(True)
    out = loss(logits, y, torch.tensor([11, 0, 5, 3, 8]))
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    assert "target" in loss.state_dict()

    torch.save(loss.state_dict(), tmp_path / "loss.pt")
    fresh = build_loss("elr", num_classes=C, num_samples=n, beta=0.9, **{"lambda": 7.0})
    fresh.load_state_dict(torch.load(tmp_path / "loss.pt", weights_only=True))
    torch.testing.assert_close(fresh.target, loss.target, rtol=0, atol=0)
    assert fresh.target[[11, 0, 5, 3, 8]].sum(dim=1).gt(0).all() and not fresh.target[[1, 2]].any()


def test_synchronize_in_one_process_keeps_the_memory_and_forgets_the_touched_rows():
    n = 9
    loss = build_loss("elr", num_classes=C, num_samples=n)
    logits, y = _batch(b=4, seed=6)
    index = torch.tensor([8, 2, 5, 0])
    loss(logits, y, index)
    assert loss._touched.nonzero().squeeze(1).tolist() == [0, 2, 5, 8]
    before = loss.target.clone()
    loss.synchronize()
    assert torch.equal(loss.target, before) and not loss._touched.any()
    assert "_touched" not in loss.state_dict()  # checkpoints hold the memory only
    for name in ("ce", "gce", "sce"):
        build_loss(name, num_classes=C, num_samples=n).synchronize()


@pytest.mark.parametrize("name", LOSSES)
def test_gradients_are_finite_even_for_extreme_logits(name):
    logits = torch.tensor([[60.0, -60.0, 0.0, 0, 0, 0], [-80.0, 80.0, 0, 0, 0, 0]], requires_grad=True)
    y = torch.tensor([1, 1])
    loss = build_loss(name, num_classes=C, num_samples=4)
    out = loss(logits, y, torch.tensor([0, 3]))
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(logits.grad).all()


def test_sce_rce_is_minus_a_times_the_mass_off_the_label():
    """A known answer: RCE = -A * (1 - p_y) when no probability falls under the 1e-7 clamp."""
    logits = torch.tensor([[2.0, 0.0, -1.0]])
    p = torch.softmax(logits, 1)[0]
    rce = build_loss("sce", num_classes=3, num_samples=1, alpha=0.0, beta=1.0).per_sample(logits, torch.tensor([0]))
    assert rce.item() == pytest.approx(4.0 * (1 - p[0].item()), rel=1e-6)


def test_missing_hyperparameters_take_the_defaults():
    assert HYPERPARAMETERS["sce"] == {"alpha": 0.1, "beta": 1.0, "a": -4.0}
    loss = build_loss("elr", num_classes=C, num_samples=3, beta=0.9)
    assert (loss.beta, loss.lam) == (0.9, 3.0)
    assert build_loss("gce", num_classes=C, num_samples=3, q=None).q == 0.7


@pytest.mark.parametrize(("name", "hp", "match"), [
    ("focal", {}, "unknown loss 'focal'"),
    ("gce", {"q": 0.0}, r"q must lie in \(0, 1\]"),
    ("gce", {"q": 1.5}, r"q must lie in \(0, 1\]"),
    ("elr", {"beta": 1.0}, r"beta must lie in \[0, 1\)"),
    ("elr", {"beta": -0.1}, r"beta must lie in \[0, 1\)"),
    ("elr", {"lambda": -1.0}, "lambda must be non-negative"),
    ("sce", {"alpha": -1.0}, "non-negative"),
    ("sce", {"a": 0.0}, "must be negative"),
    ("ce", {"q": 0.7}, "takes no hyperparameter q"),
])
def test_bad_names_and_hyperparameters(name, hp, match):
    with pytest.raises(UserError, match=match):
        build_loss(name, num_classes=C, num_samples=10, **hp)
