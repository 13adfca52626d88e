"""Validation of a selector's inputs: labels, features, masks and losses (ValueError naming the bad one)."""
from __future__ import annotations

import torch


def check_labels(labels: torch.Tensor, n: int, num_classes: int, device: torch.device) -> torch.Tensor:
    """Validate (N,) integer labels in [0, num_classes); returns them as int64 on ``device``."""
    if labels.dim() != 1 or labels.shape[0] != n or labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be an integer (N,) tensor with N = {n}, "
                         f"got {labels.dtype} {tuple(labels.shape)}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    labels = labels.to(device=device, dtype=torch.int64)
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}), got [{int(labels.min())}, {int(labels.max())}]")
    return labels


def check_inputs(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate features and labels; returns float32/float64 features and int64 labels on the features' device."""
    if features.dim() != 2 or not features.is_floating_point():
        raise ValueError(f"features must be a floating (N, D) tensor, got {features.dtype} {tuple(features.shape)}")
    if features.dtype not in (torch.float32, torch.float64):
        features = features.float()
    return features, check_labels(labels, features.shape[0], num_classes, features.device)


def check_mask(mask: torch.Tensor | None, n: int, device: torch.device, name: str) -> torch.Tensor | None:
    if mask is None:
        return None
    if mask.dtype != torch.bool or tuple(mask.shape) != (n,):
        raise ValueError(f"{name} must be a bool tensor of shape ({n},), got {mask.dtype} {tuple(mask.shape)}")
    return mask.to(device)



def row_norms(features: torch.Tensor) -> torch.Tensor:
    """(N,) row norms; raises ValueError on NaN/Inf features."""
    norms = torch.linalg.vector_norm(features, dim=1)
    if not bool(torch.isfinite(norms).all()):
        if not bool(torch.isfinite(features).all()):
            raise ValueError("features contain NaN or Inf; check the model's outputs before selecting")
        raise ValueError("feature norms overflow; rescale the features")
    return norms



def check_losses(losses: torch.Tensor) -> torch.Tensor:
    if losses.dim() != 1 or not losses.is_floating_point():
        raise ValueError(f"losses must be a floating (N,) tensor, got {losses.dtype} {tuple(losses.shape)}")
    if not bool(torch.isfinite(losses).all()):
        raise ValueError("losses contain NaN or Inf; check the model's outputs before selecting")
    return losses

