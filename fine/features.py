"""Penultimate features and logits of a whole dataset, written by sample index."""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


@torch.no_grad()
def extract_features(model: nn.Module, loader: Iterable, num_samples: int,
                     device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``model`` in eval mode over ``loader`` (batches ``(x, y, index)``, a DataLoader or a
    :class:`~data_loader.tensor_loader.TensorLoader` epoch) and collect its outputs by index.

    Returns
    -------
    features : (num_samples, D) float32 CPU tensor, row ``i`` = penultimate features of sample ``i``
    logits : (num_samples, C) float32 CPU tensor

    The model's train/eval mode is restored afterwards. Rows of samples the loader does not visit stay zero.
    """
    was_training = model.training
    model.eval()
    features = torch.zeros(num_samples, model.feature_dim)
    logits = torch.zeros(num_samples, model.head.out_features)
    for x, _, index in loader:
        index = index.cpu()
        feats = model.forward_features(x.to(device, non_blocking=True))
        features[index] = feats.float().cpu()
        logits[index] = model.head(feats).float().cpu()
    model.train(was_training)
    return features, logits
