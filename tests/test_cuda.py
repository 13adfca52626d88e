"""The CUDA paths, each against the CPU where the results must agree: NCCL collectives and SyncBatchNorm (a spawned
1-process NCCL group), both trainers under ``torchrun --nproc_per_node 1`` on the GPU, fp16 loss scaling,
``torch.compile``, the device-side extraction buffer, the device-resident data path, selection on the device (the
selectors and a trainer's whole selection round), and Co-teaching's running totals on the GPU.

Every test is skipped without a CUDA device; ``bench/gpu_check.sh`` runs this file first on a lent GPU.
"""
from __future__ import annotations

import copy
import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch import nn

import dividemix.train as dm
from data_loader.datasets import NoisyDataset
from data_loader.tensor_loader import TensorLoader
from dynamic_selection import train as ds
from engine import loop
from engine.checkpoint import load_checkpoint
from engine.data import TrainBatches
from fine import features as features_module
from fine.amp import prepare_model
from fine.distributed import (ShardedSampler, all_reduce_sum, broadcast_object, cleanup, gather_by_index,
                              init_distributed, wrap_ddp)
from fine.features import extract_features
from fine.models import create_model
from fine.selection import SelectorConfig, fine_select, loss_gmm_select, select_samples
from tests.fixtures import synthetic_features

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.fixture(autouse=True)
def default_backend_flags():
    """A trainer run switches on cuDNN autotuning and TF32 for the whole process (``fine.amp.configure_backends``);
    put the flags back after each test, so that later tests in this process compare at float32 precision."""
    flags = torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    yield
    torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = flags


@pytest.fixture
def fp32_convolutions(monkeypatch):
    """Exact float32 convolutions and matmuls on the GPU (no TF32), also inside a trainer's run, so that CUDA
    outputs match the CPU's to float32 rounding (:func:`default_backend_flags` restores the flags)."""
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    monkeypatch.setattr(loop, "configure_backends", lambda device, amp: None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def digits_argv(tmp_path: Path, device: str, *flags: str) -> list[str]:
    return ["--dataset", "digits", "--data_path", str(tmp_path / "data"), "--output", str(tmp_path / device),
            "--device", device, "--batch_size", "64", *flags]


def metric_rows(summary: dict) -> list[dict]:
    return [json.loads(line) for line in (Path(summary["run_dir"]) / "metrics.jsonl").read_text().splitlines()]


# --- NCCL and SyncBatchNorm in a spawned 1-process group ---------------------------------------------------------

def _nccl_worker(_: int, port: int) -> None:
    """Body of the spawned process: join a 1-process NCCL group as torchrun would, then check each collective,
    SyncBatchNorm under DDP and the distributed selection against their known results."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK="0", LOCAL_RANK="0", WORLD_SIZE="1")
    torch.backends.cudnn.allow_tf32 = False  # float32 convolutions: the BatchNorm copies must agree closely
    world = init_distributed("cuda")
    try:
        cuda = world.device
        assert dist.get_backend() == "nccl" and cuda == torch.device("cuda", 0)
        # collectives: with one process a sum is the tensor itself, a gather places each row at its index
        x = torch.arange(6.0, device=cuda).view(2, 3)
        assert torch.equal(all_reduce_sum(x.clone()), x)
        host = torch.arange(4)
        summed = all_reduce_sum(host.clone())  # a CPU tensor goes to the GPU for NCCL and comes back
        assert summed.device.type == "cpu" and torch.equal(summed, host)
        values = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], device=cuda)
        index = torch.tensor([4, 0, 2], device=cuda)
        expected = torch.zeros(6, 2, device=cuda)
        expected[index] = values
        assert torch.equal(gather_by_index(values, index, 6), expected)
        flags = gather_by_index(torch.tensor([True, False, True], device=cuda), index, 6)
        assert flags.dtype == torch.bool and flags.tolist() == [False, False, True, False, True, False]
        assert broadcast_object({"epoch": 3}) == {"epoch": 3}

        # SyncBatchNorm: converted under DDP, and with one process the same as BatchNorm (outputs, gradients)
        torch.manual_seed(0)
        plain = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()).to(cuda)
        ddp = wrap_ddp(copy.deepcopy(plain), world, sync_bn=True)
        assert isinstance(ddp, nn.parallel.DistributedDataParallel) and isinstance(ddp.module[1], nn.SyncBatchNorm)
        batch = torch.randn(8, 3, 6, 6, device=cuda)
        out_plain, out_sync = plain(batch), ddp(batch)
        torch.testing.assert_close(out_sync, out_plain, rtol=1e-4, atol=1e-5)
        out_plain.square().sum().backward()
        out_sync.square().sum().backward()
        torch.testing.assert_close(ddp.module[0].weight.grad, plain[0].weight.grad, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(ddp.module[1].running_mean, plain[1].running_mean, rtol=1e-5, atol=1e-6)

        # selection through the process group equals the plain selection
        feats, labels, _ = synthetic_features(3000, 32, 6, 0.4, spread=1.0, seed=5)
        feats, labels = feats.to(cuda), labels.to(cuda)
        logits = torch.randn(3000, 6, generator=torch.Generator().manual_seed(6)).to(cuda)
        positions = torch.arange(3000, device=cuda)
        for config in (SelectorConfig(), SelectorConfig("loss-gmm")):
            grouped = select_samples(config, feats, logits, labels, 6, positions=positions, num_samples=3000)
            losses = nn.functional.cross_entropy(logits, labels, reduction="none")
            reference = fine_select(feats, labels, 6) if config.kind == "fine" else loss_gmm_select(losses)
            assert grouped.clean_mask.is_cuda
            assert (grouped.clean_mask == reference.clean_mask).float().mean() >= 0.999
            torch.testing.assert_close(grouped.scores, reference.scores, rtol=1e-4, atol=1e-5)
    finally:
        cleanup()


def test_nccl_collectives_sync_bn_and_selection():
    torch.multiprocessing.spawn(_nccl_worker, args=(free_port(),), nprocs=1, join=True)


# --- both trainers under torchrun on the GPU -----------------------------------------------------------------------

@pytest.mark.parametrize("trainer,flags", [
    ("dynamic_selection", ["--method", "fine", "--warmup", "1", "--every", "1"]),  # NCCL, DDP, selection rounds
    ("dividemix", ["--selector", "fine", "--warmup", "1", "--num_batches", "4", "--sync_bn"]),  # + SyncBatchNorm
])
def test_one_process_torchrun_on_cuda(tmp_path, trainer, flags):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1", "-m",
           f"{trainer}.train", *digits_argv(tmp_path, "cuda", "--epochs", "2", *flags)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "1 process(es)" in proc.stdout
    (summary_path,) = (tmp_path / "cuda").rglob("summary.json")
    summary = json.loads(summary_path.read_text())
    assert summary["finished"] and 0.0 <= summary["last_test_acc"] <= 100.0
    assert json.loads((summary_path.parent / "args.json").read_text())["args"]["sync_bn"] == ("--sync_bn" in flags)
    assert summary["selection"] is not None and summary["selection"]["selected"] > 0


# --- the trainers' CUDA paths in a plain run -----------------------------------------------------------------------

@pytest.mark.parametrize("method,amp", [("standard", "fp16"), ("coteaching", "fp16"), ("coteaching+", "off"),
                                        ("fine", "bf16")])
def test_trainer_epochs_on_cuda(tmp_path, method, amp):
    """fp16 with loss scaling (one scaler per network), bf16, and Co-teaching(+)'s running totals on the GPU."""
    extra = {"fine": ["--warmup", "1", "--every", "1"], "coteaching+": ["--init_epochs", "0"]}.get(method, [])
    summary = ds.main(ds.get_args_parser().parse_args(digits_argv(
        tmp_path, "cuda", "--method", method, "--amp", amp, "--epochs", "2", *extra)))
    rows = metric_rows(summary)
    assert [r["epoch"] for r in rows] == [0, 1] and all(math.isfinite(r["train/loss"]) for r in rows)
    scalers = load_checkpoint(Path(summary["run_dir"]) / "last.pt")["scalers"]
    assert len(scalers) == (2 if method.startswith("coteaching") else 1)
    for state in scalers:  # an enabled GradScaler saves its scale; a pass-through one saves nothing
        assert (state["scale"] > 0) if amp == "fp16" else state == {}
    if method.startswith("coteaching"):
        assert all(0.0 < r["train/kept_fraction"] <= 1.0 and 0.0 <= r["train/kept_precision"] <= 1.0 for r in rows)


# --- torch.compile ---------------------------------------------------------------------------------------------------

def test_compiled_model_matches_eager(fp32_convolutions):
    torch._dynamo.reset()
    torch.manual_seed(0)
    eager = create_model("small_cnn", 10).cuda()
    compiled = prepare_model(copy.deepcopy(eager), channels_last=False, compile=True)
    x = torch.randn(32, 1, 8, 8, device="cuda")
    out_eager, out_compiled = eager(x), compiled(x)  # train mode: batch statistics
    torch.testing.assert_close(out_compiled, out_eager, rtol=1e-4, atol=1e-4)
    out_eager.square().sum().backward()
    out_compiled.square().sum().backward()
    for a, b in zip(eager.parameters(), compiled.parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-3, atol=1e-4)
    eager.eval()
    compiled.eval()
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), eager(x), rtol=1e-4, atol=1e-4)


def test_compiled_trainer_run(tmp_path):
    torch._dynamo.reset()
    summary = ds.main(ds.get_args_parser().parse_args(digits_argv(tmp_path, "cuda", "--method", "standard",
                                                                  "--compile", "--epochs", "1")))
    assert summary["finished"] and math.isfinite(metric_rows(summary)[0]["train/loss"])
    weights = load_checkpoint(Path(summary["run_dir"]) / "last.pt")["models"][0]
    assert weights and not any(key.startswith("_orig_mod.") for key in weights)  # saved unwrapped


# --- the device-side extraction buffer and the device-resident data path -----------------------------------------

def random_images(n: int, channels: int, size: int, seed: int) -> NoisyDataset:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8, generator=g)
    return NoisyDataset(images, torch.randint(0, 10, (n,), generator=g).numpy())


def test_extraction_buffer_on_the_device_or_the_host(fp32_convolutions, monkeypatch):
    dataset = random_images(60, 1, 8, seed=1)
    torch.manual_seed(0)
    model = create_model("small_cnn", 10).eval()
    subset = torch.tensor([41, 3, 17, 0, 58, 22, 9, 30, 11, 50, 7, 44, 26])

    def extract(device: str) -> tuple[torch.Tensor, torch.Tensor]:
        loader = TensorLoader(dataset, "digits", batch_size=4, device=device)
        visits = loader.epoch(subset, shuffle=True, augment=False, generator=torch.Generator().manual_seed(2))
        return extract_features(model.to(device), visits, subset, device)

    expected = extract("cpu")
    needed = len(subset) * (model.feature_dim + 10) * 4  # bytes of the features and logits
    for budget, where in ((needed, "cuda"), (needed - 1, "cpu")):
        monkeypatch.setattr(features_module, "DEVICE_BUFFER_BYTES", budget)
        got = extract("cuda")
        for a, b in zip(got, expected):
            assert a.device.type == where
            torch.testing.assert_close(a.cpu(), b, rtol=1e-4, atol=1e-5)


def test_tensor_loader_batches_on_cuda_equal_the_cpu_ones():
    """The draws come from CPU generators, so a seed gives the same batches on either device."""
    dataset = random_images(70, 3, 32, seed=3)
    loaders = {d: TensorLoader(dataset, "cifar10", batch_size=16, device=d, channels_last=True)
               for d in ("cpu", "cuda")}
    epochs = {d: list(loader.epoch(torch.arange(5, 70), shuffle=True, augment=True,
                                   generator=torch.Generator().manual_seed(4))) for d, loader in loaders.items()}
    two_views = {d: list(TrainBatches(ShardedSampler(torch.arange(70), torch.Generator().manual_seed(5)),
                                      dataset=dataset, resident=loader, batch_size=32,
                                      augment=torch.Generator().manual_seed(6), two_views=True))
                 for d, loader in loaders.items()}
    for batches in (epochs, two_views):
        assert len(batches["cpu"]) == len(batches["cuda"]) > 1
        for on_cpu, on_cuda in zip(batches["cpu"], batches["cuda"]):
            assert on_cuda[0].is_cuda and on_cuda[0].is_contiguous(memory_format=torch.channels_last)
            for a, b in zip(on_cuda, on_cpu):
                if a.is_floating_point():
                    torch.testing.assert_close(a.cpu(), b, rtol=1e-6, atol=1e-6)
                else:
                    assert torch.equal(a.cpu(), b)


# --- selection on the device -------------------------------------------------------------------------------------

@pytest.mark.parametrize("config", [SelectorConfig("small-loss", {"forget_rate": 0.4}),
                                    SelectorConfig("loss-gmm"),
                                    SelectorConfig("fine", {"fit": "kmeans", "vector": "mean"})])
def test_selectors_on_cuda_match_cpu(config):
    feats, labels, _ = synthetic_features(4000, 32, 8, 0.4, spread=1.0, seed=7)
    logits = torch.randn(4000, 8, generator=torch.Generator().manual_seed(8)) + 2 * nn.functional.one_hot(labels, 8)
    cpu = select_samples(config, feats, logits, labels, 8)
    gpu = select_samples(config, feats.cuda(), logits.cuda(), labels.cuda(), 8)
    assert gpu.clean_mask.is_cuda and gpu.scores.is_cuda
    assert (gpu.clean_mask.cpu() == cpu.clean_mask).float().mean() >= 0.999
    torch.testing.assert_close(gpu.scores.cpu(), cpu.scores, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("trainer,flags,files", [
    (ds, ["--method", "fine"], ["round_000.npz"]),
    (dm, ["--selector", "fine"], ["round_000_net1.npz", "round_000_net2.npz"]),
    (dm, ["--selector", "loss-gmm"], ["round_000_net1.npz", "round_000_net2.npz"]),
])
def test_trainer_selection_round_on_cuda_matches_cpu(tmp_path, fp32_convolutions, trainer, flags, files):
    """A whole selection round as a trainer runs it (features of the device-resident images selected on the GPU,
    against the DataLoader path and the CPU selector): same initial weights, same drawn pool, so the same
    selection up to float32 rounding."""
    argv = ["--epochs", "1", "--warmup", "0", "--num_batches", "8", "--batch_size", "32", *flags]
    if trainer is ds:
        argv += ["--every", "1"]
    runs = {d: Path(trainer.main(trainer.get_args_parser().parse_args(digits_argv(tmp_path, d, *argv)))["run_dir"])
            for d in ("cpu", "cuda")}
    assert json.loads((runs["cuda"] / "args.json").read_text())["args"]["data_on_gpu"] == "on"
    for name in files:
        cpu, gpu = (np.load(runs[d] / "selection" / name) for d in ("cpu", "cuda"))
        assert np.array_equal(gpu["samples"], cpu["samples"]) and len(cpu["samples"]) == 8 * 32
        assert (gpu["mask"] == cpu["mask"]).mean() >= 0.99 and cpu["mask"].any()
        np.testing.assert_allclose(gpu["scores"], cpu["scores"], rtol=1e-3, atol=1e-4)
