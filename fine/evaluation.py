"""Predictions of one or more networks on an evaluation set, and top-k accuracy."""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from fine.amp import autocast
from fine.distributed import gather_by_index, get_rank, get_world_size, shard_indices


def evaluation_loader(dataset: Dataset, *, batch_size: int, num_workers: int, pin_memory: bool) -> DataLoader:
    """A DataLoader over this process's share of ``dataset`` for :func:`predict` (all of it in a plain run; under
    torchrun each sample goes to exactly one process), in index order."""
    shard = shard_indices(torch.arange(len(dataset)), world_size=get_world_size(), rank=get_rank(), shuffle=False,
                          pad=False)
    return DataLoader(dataset, batch_size=batch_size, sampler=shard.tolist(), num_workers=num_workers,
                      pin_memory=pin_memory)


@torch.no_grad()
def predict(models: list[nn.Module], loader: DataLoader, device: torch.device, *,
            amp: str = "off") -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of every network in ``models`` on the whole of ``loader.dataset``, in eval mode.

    ``loader`` yields ``(x, y, index)``; under torchrun each process passes its share (:func:`evaluation_loader`)
    and the rows are gathered by index, so every process gets the same result. The forward passes run under
    ``amp`` autocast (:func:`fine.amp.autocast`); each network's train/eval mode is restored afterwards.

    Returns
    -------
    logits : (M, N, C) float32, network ``m``'s logits of sample ``i`` at ``[m, i]``; labels : (N,) int64. Both in
    dataset order, on the CPU.
    """
    was_training = [m.training for m in models]
    for m in models:
        m.eval()
    logits, labels, indices = [], [], []
    for x, y, index in loader:
        x = x.to(device, non_blocking=True)
        with autocast(device, amp):
            logits.append(torch.stack([m(x).float() for m in models], 1).cpu())  # (B, M, C)
        labels.append(torch.as_tensor(y))
        indices.append(torch.as_tensor(index))
    for m, mode in zip(models, was_training):
        m.train(mode)
    n, index = len(loader.dataset), torch.cat(indices)
    return gather_by_index(torch.cat(logits), index, n).transpose(0, 1), gather_by_index(torch.cat(labels), index, n)


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor, topk: tuple[int, ...] = (1,)) -> list[float]:
    """Top-k accuracy (%) of ``scores`` (N, C) (logits or probabilities) against ``labels`` (N,), one per k.

    A k above C counts every sample as a hit; ties are broken as ``torch.topk`` breaks them.
    """
    ranked = scores.topk(min(max(topk), scores.shape[1]), dim=1).indices
    hits = ranked == labels.to(ranked.device)[:, None]
    return [100.0 * hits[:, :k].any(1).float().mean().item() for k in topk]
