"""Penultimate features and logits of a whole dataset, written by sample index."""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from fine.amp import autocast

# Outputs up to this size are collected on the accelerator and copied to the host once, not batch by batch.
DEVICE_BUFFER_BYTES = 2 << 30


@torch.no_grad()
def extract_features(model: nn.Module, loader: Iterable, num_samples: int, device: torch.device, *,
                     amp: str = "off", subset: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``model`` in eval mode over ``loader`` (batches ``(x, y, index)``, a DataLoader or a
    :class:`~data_loader.tensor_loader.TensorLoader` epoch) and collect its outputs by index.

    The forward pass runs under ``amp`` autocast (:func:`fine.amp.autocast`); outputs are stored in float32.
    ``subset`` (n,) distinct indices of the ``num_samples`` dataset samples: collect only their outputs, row ``j``
    for sample ``subset[j]`` (the loader should visit no other sample).

    Returns
    -------
    features : (num_samples, D) float32 CPU tensor, row ``i`` = penultimate features of sample ``i``; with
        ``subset``, (n, D)
    logits : (num_samples, C) or (n, C) float32 CPU tensor

    The model's train/eval mode is restored afterwards. Rows of samples the loader does not visit stay zero.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    dim, num_classes = model.feature_dim, model.head.out_features
    rows = num_samples if subset is None else len(subset)
    fits = rows * (dim + num_classes) * 4 <= DEVICE_BUFFER_BYTES
    store = device if device.type != "cpu" and fits else torch.device("cpu")
    features = torch.zeros(rows, dim, device=store)
    logits = torch.zeros(rows, num_classes, device=store)
    row_of = None  # dataset index -> output row
    if subset is not None:
        row_of = torch.full((num_samples,), -1, dtype=torch.int64, device=store)
        row_of[subset.to(store)] = torch.arange(rows, device=store)
    for x, _, index in loader:
        with autocast(device, amp):
            feats = model.forward_features(x.to(device, non_blocking=True))
            out = model.head(feats)
        index = index.to(store) if row_of is None else row_of[index.to(store)]
        features[index] = feats.float().to(store)
        logits[index] = out.float().to(store)
    model.train(was_training)
    return features.cpu(), logits.cpu()
