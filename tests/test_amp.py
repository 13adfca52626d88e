"""fine.amp: autocast modes, the gradient scaler, model preparation and backend flags."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from fine.amp import autocast, configure_backends, exact_float32, grad_scaler, prepare_model, unwrap_model
from fine.errors import UserError
from fine.models import create_model

CPU = torch.device("cpu")


def test_bf16_autocast_runs_linear_in_bf16_on_cpu():
    layer, x = nn.Linear(4, 3), torch.randn(2, 4)
    with autocast(CPU, "bf16"):
        out = layer(x)
    assert out.dtype == torch.bfloat16
    assert torch.allclose(out.float(), layer(x), atol=0.05)


def test_off_is_a_no_op():
    layer, x = nn.Linear(4, 3), torch.randn(2, 4)
    with autocast(CPU, "off"):
        out = layer(x)
        assert not torch.is_autocast_enabled("cpu")
    assert out.dtype == torch.float32 and torch.equal(out, layer(x))


@pytest.mark.parametrize("amp", ["off", "bf16"])
def test_scaler_disabled_on_cpu(amp):
    scaler = grad_scaler(CPU, amp)
    loss = torch.tensor(2.0)
    assert not scaler.is_enabled() and scaler.scale(loss) is loss


def test_fp16_on_cpu_and_unknown_modes_raise_one_line_user_error():
    for call in (autocast, grad_scaler):
        with pytest.raises(UserError, match="--amp bf16 or --amp off") as err:
            call(CPU, "fp16")
        assert "\n" not in str(err.value)
        with pytest.raises(UserError, match="choose one of off, bf16, fp16"):
            call(CPU, "fp32")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fp16_on_cuda():
    cuda = torch.device("cuda")
    layer = nn.Linear(4, 3).to(cuda)
    with autocast(cuda, "fp16"):
        assert layer(torch.randn(2, 4, device=cuda)).dtype == torch.float16
    assert grad_scaler(cuda, "fp16").is_enabled() and not grad_scaler(cuda, "bf16").is_enabled()


def test_prepare_model_channels_last_and_compile_wrapper():
    model = create_model("small_cnn", 10)
    prepared = prepare_model(model, channels_last=True, compile=False)
    conv = prepared.features[0][0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(2, 1, 8, 8)
    assert prepared(x).shape == (2, 10)
    compiled = prepare_model(model, channels_last=False, compile=True)
    assert compiled is not model and unwrap_model(compiled) is model and unwrap_model(model) is model
    assert compiled.feature_dim == 128 and compiled.head is model.head
    assert set(unwrap_model(compiled).state_dict()) == set(model.state_dict())


def test_configure_backends():
    flags = (torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    try:
        torch.backends.cudnn.benchmark = False
        configure_backends(CPU)
        assert torch.backends.cudnn.benchmark is False
        configure_backends(torch.device("cuda"))  # only sets flags; needs no GPU
        assert torch.backends.cudnn.benchmark and not torch.backends.cuda.matmul.allow_tf32  # float32 run
        configure_backends(torch.device("cuda"), "bf16")
        assert torch.backends.cuda.matmul.allow_tf32
        with exact_float32():
            assert not torch.backends.cuda.matmul.allow_tf32
        assert torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = flags
