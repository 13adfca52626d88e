"""Penultimate features and logits of a set of samples, written by sample index."""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from fine.amp import autocast

# Outputs up to this size are collected on the accelerator (and returned there, so the selector runs where the
# features are); larger ones are copied to the host batch by batch.
DEVICE_BUFFER_BYTES = 2 << 30


@torch.no_grad()
def extract_features(model: nn.Module, loader: Iterable, indices: torch.Tensor, device: torch.device | str, *,
                     amp: str = "off") -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``model`` in eval mode over ``loader`` and collect its outputs for the samples ``indices``.

    Parameters
    ----------
    model : a network with ``forward_features``, ``head`` and ``feature_dim`` (:mod:`fine.models`).
    loader : batches ``(x, y, index)`` (a DataLoader or a :class:`~data_loader.tensor_loader.TensorLoader` epoch)
        visiting each sample of ``indices`` once, in any order, and no other sample.
    indices : (n,) distinct dataset indices; row ``j`` of the outputs belongs to sample ``indices[j]``.
    device : where the forward pass runs.
    amp : autocast precision of the forward pass (:func:`fine.amp.autocast`); outputs are stored in float32.

    Returns
    -------
    features : (n, D) float32; logits : (n, C) float32. Both on ``device`` when they fit in
    ``DEVICE_BUFFER_BYTES`` there, else on the CPU. The model's train/eval mode is restored afterwards; rows of
    samples the loader does not visit stay zero.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    indices = torch.as_tensor(indices, dtype=torch.int64)
    rows, dim, num_classes = len(indices), model.feature_dim, model.head.out_features
    fits = rows * (dim + num_classes) * 4 <= DEVICE_BUFFER_BYTES
    store = device if device.type != "cpu" and fits else torch.device("cpu")
    features = torch.zeros(rows, dim, device=store)
    logits = torch.zeros(rows, num_classes, device=store)
    row_of = torch.full((int(indices.max()) + 1 if rows else 0,), -1, dtype=torch.int64, device=store)
    row_of[indices.to(store)] = torch.arange(rows, device=store)  # dataset index -> output row
    for x, _, index in loader:
        with autocast(device, amp):
            feats = model.forward_features(x.to(device, non_blocking=True))
            out = model.head(feats)
        row = row_of[index.to(store)]
        features[row] = feats.float().to(store)
        logits[row] = out.float().to(store)
    model.train(was_training)
    return features, logits
