"""Training throughput of the two input pipelines, and the cost of a selection round relative to an epoch.

    python -m bench.train_throughput                          # auto device; N = 1,024 on CPU, 50,000 on CUDA
    python -m bench.train_throughput --amp bf16 --channels_last --compile --json out.json

On synthetic CIFAR-sized uint8 images (random bytes and labels) held in a NoisyDataset, one epoch of ``--arch``
training (PreAct ResNet-18 by default, ``small_cnn`` for a quick CPU smoke test; cross-entropy, one SGD step per
batch) is timed through

- the standard path: ``DataLoader(NoisyDataset + the CIFAR-10 train transform)``, per-sample torchvision transforms
  in ``--workers`` processes, batches copied to the device;
- the tensor path: :class:`data_loader.tensor_loader.TensorLoader`, images resident on the device and augmented
  per batch there,

in the same process, after a warm-up of both (and of ``torch.compile``), first producing the batches alone (the input
pipeline's own speed), then training on them. Then one selection round is timed, as the trainers run it:
eval-mode penultimate features of all N samples by :func:`fine.features.extract_features` over
``TensorLoader(augment=False)`` batches of 4 x ``--batch_size`` (under ``--amp``), then
:func:`fine.selection.select_samples` (FINE) where the features are; it is reported as a fraction of the
tensor-path epoch.

A DivideMix epoch (``--dividemix_batches``, 0 skips it) is timed on the tensor path too: two networks, each trained
by :func:`dividemix.train.mixmatch_one_epoch` on two augmented views of a labelled half of the samples (the split at
50% noise) with the other half unlabelled, for ceil(N / 2 / batch_size) MixMatch steps; with fewer timed steps the
epoch is extrapolated from them. Its two selection rounds (one per network, FINE as F-DivideMix) are reported as a
fraction of it. ``--json`` writes every figure to a file (read by ``bench.gpu_report``).
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from data_loader.datasets import NoisyDataset
from data_loader.tensor_loader import TensorLoader
from data_loader.transforms import get_transforms
from dividemix.train import mixmatch_one_epoch
from engine.data import TrainBatches
from fine.amp import AMP_MODES, autocast, configure_backends, grad_scaler, prepare_model
from fine.distributed import ShardedSampler
from fine.errors import UserError, run_cli
from fine.features import extract_features
from fine.models import create_model
from fine.selection import SelectorConfig, select_samples

NUM_CLASSES = 10
ARCHS = ("preact_resnet18", "resnet18", "resnet34", "small_cnn")  # networks of 3x32x32 images
EPOCH_IMAGES = 50_000  # the CIFAR-10 training set, which the H100 targets are stated for


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", type=str, default="auto", choices=("auto", "cpu", "cuda"),
                        help="where to train; auto = cuda when available")
    parser.add_argument("--num_samples", type=int, default=None,
                        help="synthetic training images N; default 1,024 on CPU and 50,000 on CUDA")
    parser.add_argument("--batch_size", type=int, default=128, help="training and extraction batch size")
    parser.add_argument("--arch", type=str, default="preact_resnet18", choices=ARCHS,
                        help="network (the H100 targets are for preact_resnet18)")
    parser.add_argument("--amp", type=str, default="off", choices=AMP_MODES, help="mixed precision of the forward pass")
    parser.add_argument("--channels_last", action="store_true", help="channels-last model and batches")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (warm-up compiles it)")
    parser.add_argument("--workers", type=int, default=None,
                        help="DataLoader worker processes of the standard path; default 0 on CPU, min(8, cores) on "
                             "CUDA")
    parser.add_argument("--dividemix_batches", type=int, default=None,
                        help="MixMatch steps timed per network for the DivideMix epoch (extrapolated to the whole "
                             "epoch when fewer); default: the whole epoch; 0 skips the DivideMix timing")
    parser.add_argument("--json", type=str, default=None, help="also write the figures to this JSON file")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic data, model and shuffling")
    return parser


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, fn: Callable[[], object]) -> float:
    """Seconds ``fn()`` takes, with the device's queued work included."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def make_network(args: argparse.Namespace, device: torch.device) -> tuple[nn.Module, torch.optim.Optimizer]:
    """A fresh ``--arch`` network prepared for ``--channels_last`` / ``--compile`` and its SGD optimiser."""
    model = prepare_model(create_model(args.arch, NUM_CLASSES, input_shape=(3, 32, 32)).to(device),
                          channels_last=args.channels_last, compile=args.compile)
    return model, torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9, weight_decay=5e-4)


def time_dividemix(args: argparse.Namespace, first: tuple[nn.Module, torch.optim.Optimizer], dataset: NoisyDataset,
                   loader: TensorLoader, round_fn: Callable[[nn.Module], object], device: torch.device) -> dict:
    """Time one DivideMix epoch (two networks, MixMatch on the tensor path) and its two selection rounds.

    ``first`` is an already warmed-up network and its optimiser; the peer is a fresh one. Returns the figures
    (seconds, steps, ratio) of :func:`main`'s ``dividemix`` entry.
    """
    n = len(dataset)
    g = torch.Generator().manual_seed(args.seed + 1)
    order = torch.randperm(n, generator=g)
    labelled_idx, unlabelled_idx = order[:n // 2], order[n // 2:]  # the split at 50% noise
    nets = [first, make_network(args, device)]
    scalers = [grad_scaler(device, args.amp) for _ in nets]
    mm_args = argparse.Namespace(amp=args.amp, T=0.5, alpha=4.0, lambda_u=25.0, warmup=10)
    w = torch.rand(n, generator=g).to(device)  # the peer's clean probability of every sample
    rng = np.random.default_rng(args.seed)

    def views(indices: torch.Tensor) -> TrainBatches:
        return TrainBatches(ShardedSampler(indices, g), dataset=dataset, resident=loader,
                            batch_size=args.batch_size, augment=g, two_views=True)

    labelled, unlabelled = views(labelled_idx), views(unlabelled_idx)
    steps_per_epoch = len(labelled)
    steps = steps_per_epoch if args.dividemix_batches is None else min(args.dividemix_batches, steps_per_epoch)

    def epoch(max_batches: int) -> None:
        for i, (model, optimizer) in enumerate(nets):
            mixmatch_one_epoch(model, nets[1 - i][0], labelled, unlabelled, w, optimizer, mm_args, 30, NUM_CLASSES,
                               rng, device, desc=f"DivideMix net {i + 1}", scaler=scalers[i], max_batches=max_batches)

    warmup = timed(device, lambda: epoch(2))  # cuDNN plans of the MixMatch batch shapes
    train = timed(device, lambda: epoch(steps)) * steps_per_epoch / steps
    rounds = timed(device, lambda: [round_fn(model) for model, _ in nets])
    return {"warmup_s": warmup, "steps_timed": steps, "steps_per_epoch": steps_per_epoch, "epoch_s": train,
            "rounds_s": rounds, "round_ratio": rounds / train}


def main(args: argparse.Namespace) -> dict:
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda but no CUDA device is visible; use --device cpu or auto")
    if args.dividemix_batches is not None and args.dividemix_batches < 0:
        raise UserError(f"--dividemix_batches must be 0 or more, got {args.dividemix_batches}")
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    n = args.num_samples or (EPOCH_IMAGES if device.type == "cuda" else 1_024)
    workers = args.workers if args.workers is not None else (min(8, os.cpu_count() or 1) if device.type == "cuda"
                                                             else 0)
    if n < args.batch_size:
        raise UserError(f"--num_samples {n} is smaller than --batch_size {args.batch_size}; raise it")
    configure_backends(device, args.amp)
    torch.manual_seed(args.seed)
    g = torch.Generator().manual_seed(args.seed)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, NUM_CLASSES, (n,), generator=g)
    train_transform, _ = get_transforms("cifar10")
    dataset = NoisyDataset(images, labels.numpy(), transform=train_transform)

    model, optimizer = make_network(args, device)
    scaler = grad_scaler(device, args.amp)
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        with autocast(device, args.amp):
            loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    def produce(batches: Iterable) -> None:
        """The input pipeline alone: every batch made and on the device, no model."""
        for x, y, _ in batches:
            x.to(device, non_blocking=True, memory_format=memory_format), y.to(device, non_blocking=True)

    def train(batches: Iterable, limit: int | None = None) -> None:
        for i, (x, y, _) in enumerate(batches):
            if i == limit:
                break
            step(x.to(device, non_blocking=True, memory_format=memory_format), y.to(device, non_blocking=True))

    standard = DataLoader(dataset, batch_size=args.batch_size, shuffle=True, num_workers=workers,
                          pin_memory=device.type == "cuda", persistent_workers=workers > 0, generator=g)
    tensor_loader = TensorLoader(dataset, "cifar10", batch_size=args.batch_size, device=device,
                                 channels_last=args.channels_last)
    eval_loader = TensorLoader(dataset, "cifar10", batch_size=4 * args.batch_size, device=device,
                               channels_last=args.channels_last)  # the trainers extract in batches of 4x
    device_labels = labels.to(device)

    def extract(net: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        """What a trainer's selection round runs first: (N, D) features of the un-augmented images, on the device."""
        return extract_features(net, eval_loader.epoch(None, shuffle=False, augment=False), torch.arange(n), device,
                                amp=args.amp)

    def selection_round(net: nn.Module) -> None:
        features, logits = extract(net)
        select_samples(SelectorConfig(), features, logits, device_labels, NUM_CLASSES)
    fast_epoch = lambda: tensor_loader.epoch(None, shuffle=True, augment=True, generator=g)  # noqa: E731

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device {device} ({name}), torch {torch.__version__}, threads {torch.get_num_threads()}; {args.arch}, N "
          f"{n}, batch {args.batch_size}, amp {args.amp}, channels_last {args.channels_last}, compile {args.compile}, "
          f"workers {workers}", flush=True)
    warmup = timed(device, lambda: (train(standard, 3), train(fast_epoch(), 3),
                                    train(tensor_loader.epoch(torch.arange(n % args.batch_size or args.batch_size),
                                                              shuffle=False, augment=True, generator=g)),
                                    selection_round(model)))
    print(f"warm-up                      {warmup:8.2f} s", flush=True)

    make_slow = timed(device, lambda: produce(standard))
    make_fast = timed(device, lambda: produce(fast_epoch()))
    slow = timed(device, lambda: train(standard))
    fast = timed(device, lambda: train(fast_epoch()))
    features: list[torch.Tensor] = []  # as in the trainers: selected where they were extracted
    t_extract = timed(device, lambda: features.extend(extract(model)))
    t_select = timed(device, lambda: select_samples(SelectorConfig(), *features, device_labels, NUM_CLASSES))
    t_round = t_extract + t_select
    print(f"batches only, DataLoader     {make_slow:8.2f} s  {n / make_slow:10.0f} img/s")
    print(f"batches only, TensorLoader   {make_fast:8.2f} s  {n / make_fast:10.0f} img/s  "
          f"({make_slow / make_fast:.1f}x the standard path)")
    print(f"standard DataLoader epoch    {slow:8.2f} s  {n / slow:10.0f} img/s")
    print(f"TensorLoader epoch           {fast:8.2f} s  {n / fast:10.0f} img/s  ({slow / fast:.2f}x the standard path)")
    print(f"selection round              {t_round:8.2f} s  (features {t_extract:.2f} s + select_samples "
          f"{t_select:.2f} s) = {t_round / fast:.2f} of a TensorLoader epoch", flush=True)
    figures = {"device": str(device), "device_name": name, "torch": torch.__version__, "arch": args.arch,
               "num_samples": n, "batch_size": args.batch_size, "amp": args.amp, "channels_last": args.channels_last,
               "compile": args.compile, "workers": workers, "warmup_s": warmup, "dataloader_batches_s": make_slow,
               "tensor_batches_s": make_fast, "dataloader_epoch_s": slow, "tensor_epoch_s": fast,
               "speedup": slow / fast, "epoch_50k_s": fast * EPOCH_IMAGES / n, "extract_s": t_extract,
               "select_s": t_select, "round_s": t_round, "round_ratio": t_round / fast, "dividemix": None}
    if args.dividemix_batches != 0:
        dm = time_dividemix(args, (model, optimizer), dataset, tensor_loader, selection_round, device)
        extrapolated = "" if dm["steps_timed"] == dm["steps_per_epoch"] else (
            f", extrapolated from {dm['steps_timed']} of {dm['steps_per_epoch']} steps per network")
        print(f"DivideMix epoch              {dm['epoch_s']:8.2f} s  (2 networks x {dm['steps_per_epoch']} MixMatch "
              f"steps{extrapolated}); its 2 selection rounds {dm['rounds_s']:.2f} s = {dm['round_ratio']:.2f} of it")
        figures["dividemix"] = dm
    if device.type == "cuda" and args.arch == "preact_resnet18":  # one H100's targets, CIFAR-10 epoch at batch 128
        print(f"H100 targets: 50k-image epoch <= 2 s (here {figures['epoch_50k_s']:.2f} s), selection round <= 0.10 "
              f"of an epoch (here {t_round / fast:.2f})")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1) + "\n")
    return figures


if __name__ == "__main__":
    run_cli(lambda: main(get_args_parser().parse_args()))
