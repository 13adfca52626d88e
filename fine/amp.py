"""Mixed precision, memory format and compilation switches shared by the trainers (``--amp``, ``--channels_last``,
``--compile``).

    configure_backends(device)
    model = prepare_model(model.to(device), channels_last=args.channels_last, compile=args.compile)
    scaler = grad_scaler(device, args.amp)
    with autocast(device, args.amp):
        loss = criterion(model(x), y)
    scaler.scale(loss).backward(); scaler.step(optimizer); scaler.update()
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import ContextManager

import torch
from torch import nn

from fine.errors import UserError

AMP_MODES = ("off", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _check(device: torch.device, amp: str) -> None:
    if amp not in AMP_MODES:
        raise UserError(f"unknown --amp {amp!r}; choose one of {', '.join(AMP_MODES)}")
    if amp == "fp16" and device.type != "cuda":
        raise UserError(f"--amp fp16 needs a CUDA device, not {device.type}; use --amp bf16 or --amp off there")


def autocast(device: torch.device, amp: str) -> ContextManager:
    """Context running the forward pass in ``amp`` precision on ``device``.

    Parameters
    ----------
    device : the model's device.
    amp : "off" (float32, a no-op context), "bf16" (any device), "fp16" (CUDA only; pair with :func:`grad_scaler`).

    Raises
    ------
    UserError : unknown ``amp``, or "fp16" off CUDA.
    """
    device = torch.device(device)
    _check(device, amp)
    if amp == "off":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=_DTYPES[amp])


def grad_scaler(device: torch.device, amp: str) -> torch.amp.GradScaler:
    """Loss scaler for ``amp``: enabled only for fp16 on CUDA, otherwise a pass-through (``scale(loss) is loss``)."""
    device = torch.device(device)
    _check(device, amp)
    return torch.amp.GradScaler(device.type, enabled=amp == "fp16")


def prepare_model(model: nn.Module, *, channels_last: bool, compile: bool) -> nn.Module:
    """Put ``model`` (already on its device) in channels-last memory format and/or wrap it in ``torch.compile``.

    Only ``forward`` is compiled; ``forward_features``, ``head`` and ``feature_dim`` stay reachable through the
    wrapper. Save and load weights through :func:`unwrap_model`, whose ``state_dict`` keys have no ``_orig_mod.``
    prefix.
    """
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if compile:
        model = torch.compile(model)
    return model


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module under a ``torch.compile`` wrapper (``model`` itself when it is not compiled)."""
    return getattr(model, "_orig_mod", model)


def configure_backends(device: torch.device, amp: str = "off") -> None:
    """Fast kernels on CUDA: cuDNN autotuning (fixed input sizes), TF32 convolutions (PyTorch's default), and TF32
    matmuls only under mixed precision (``amp`` bf16 or fp16): a float32 run keeps float32 matmuls.

    Changes process-wide settings; does nothing on other devices. The selector computes its scores in float32
    whatever these flags say (:func:`exact_float32`).
    """
    if torch.device(device).type != "cuda":
        return
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cuda.matmul.allow_tf32 = amp != "off"


@contextlib.contextmanager
def exact_float32() -> Iterator[None]:
    """Float32 matmuls without TF32 inside the block (the process-wide flag is put back afterwards)."""
    saved = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved
