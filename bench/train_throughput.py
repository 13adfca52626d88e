"""Training throughput of the two input pipelines, and the cost of a FINE selection round relative to an epoch.

    python -m bench.train_throughput                          # auto device; N = 1,024 on CPU, 50,000 on CUDA
    python -m bench.train_throughput --amp bf16 --channels_last --compile

On synthetic CIFAR-sized uint8 images (random bytes and labels) held in a NoisyDataset, one epoch of PreAct ResNet-18
training (cross-entropy, one SGD step per batch) is timed through

- the standard path: ``DataLoader(NoisyDataset + the CIFAR-10 train transform)``, per-sample torchvision transforms
  in ``--workers`` processes, batches copied to the device;
- the tensor path: :class:`data_loader.tensor_loader.TensorLoader`, images resident on the device and augmented
  per batch there,

in the same process, after a warm-up of both (and of ``torch.compile``), first producing the batches alone (the input
pipeline's own speed), then training on them. Then one selection round is timed:
eval-mode penultimate features of all N samples by :func:`fine.features.extract_features` over
``TensorLoader(augment=False)`` batches of 4 x ``--batch_size`` (as the trainers extract them, under ``--amp``), then
``fine.selection.fine_select`` where the features are; it is reported as a fraction of the tensor-path epoch.
"""
from __future__ import annotations

import argparse
import os
import time
from typing import Callable, Iterable

import torch
from torch import nn
from torch.utils.data import DataLoader

from data_loader.datasets import NoisyDataset
from data_loader.tensor_loader import TensorLoader
from data_loader.transforms import get_transforms
from fine.amp import AMP_MODES, autocast, configure_backends, grad_scaler, prepare_model
from fine.errors import UserError, run_cli
from fine.features import extract_features
from fine.models import create_model
from fine.selection import fine_select

NUM_CLASSES = 10


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", type=str, default="auto", choices=("auto", "cpu", "cuda"),
                        help="where to train; auto = cuda when available")
    parser.add_argument("--num_samples", type=int, default=None,
                        help="synthetic training images N; default 1,024 on CPU and 50,000 on CUDA")
    parser.add_argument("--batch_size", type=int, default=128, help="training and extraction batch size")
    parser.add_argument("--amp", type=str, default="off", choices=AMP_MODES, help="mixed precision of the forward pass")
    parser.add_argument("--channels_last", action="store_true", help="channels-last model and batches")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (warm-up compiles it)")
    parser.add_argument("--workers", type=int, default=None,
                        help="DataLoader worker processes of the standard path; default 0 on CPU, min(8, cores) on "
                             "CUDA")
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


def main(args: argparse.Namespace) -> None:
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda but no CUDA device is visible; use --device cpu or auto")
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    n = args.num_samples or (50_000 if device.type == "cuda" else 1_024)
    workers = args.workers if args.workers is not None else (min(8, os.cpu_count() or 1) if device.type == "cuda"
                                                             else 0)
    if n < args.batch_size:
        raise UserError(f"--num_samples {n} is smaller than --batch_size {args.batch_size}; raise it")
    configure_backends(device)
    torch.manual_seed(args.seed)
    g = torch.Generator().manual_seed(args.seed)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, NUM_CLASSES, (n,), generator=g).numpy()
    train_transform, _ = get_transforms("cifar10")
    dataset = NoisyDataset(images, labels, transform=train_transform)

    model = prepare_model(create_model("preact_resnet18", NUM_CLASSES).to(device), channels_last=args.channels_last,
                          compile=args.compile)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9, weight_decay=5e-4)
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

    def extract() -> tuple[torch.Tensor, torch.Tensor]:
        """What a trainer's selection round runs first: (N, D) features of the un-augmented images, on the device."""
        return extract_features(model, eval_loader.epoch(None, shuffle=False, augment=False), torch.arange(n), device,
                                amp=args.amp)
    fast_epoch = lambda: tensor_loader.epoch(None, shuffle=True, augment=True, generator=g)  # noqa: E731

    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}), "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}; N {n}, batch {args.batch_size}, "
          f"amp {args.amp}, channels_last {args.channels_last}, compile {args.compile}, workers {workers}")
    warmup = timed(device, lambda: (train(standard, 3), train(fast_epoch(), 3),
                                    train(tensor_loader.epoch(torch.arange(n % args.batch_size or args.batch_size),
                                                              shuffle=False, augment=True, generator=g)),
                                    extract()))
    print(f"warm-up                      {warmup:8.2f} s")

    make_slow = timed(device, lambda: produce(standard))
    make_fast = timed(device, lambda: produce(fast_epoch()))
    slow = timed(device, lambda: train(standard))
    fast = timed(device, lambda: train(fast_epoch()))
    features: list[torch.Tensor] = []  # as in the trainers: selected where they were extracted
    t_extract = timed(device, lambda: features.append(extract()[0]))
    t_select = timed(device, lambda: fine_select(features[0], torch.as_tensor(labels), NUM_CLASSES))
    print(f"batches only, DataLoader     {make_slow:8.2f} s  {n / make_slow:10.0f} img/s")
    print(f"batches only, TensorLoader   {make_fast:8.2f} s  {n / make_fast:10.0f} img/s  "
          f"({make_slow / make_fast:.1f}x the standard path)")
    print(f"standard DataLoader epoch    {slow:8.2f} s  {n / slow:10.0f} img/s")
    print(f"TensorLoader epoch           {fast:8.2f} s  {n / fast:10.0f} img/s  ({slow / fast:.2f}x the standard path)")
    print(f"selection round              {t_extract + t_select:8.2f} s  (features {t_extract:.2f} s + fine_select "
          f"{t_select:.2f} s) = {(t_extract + t_select) / fast:.2f} of a TensorLoader epoch")
    if device.type == "cuda":  # the targets of one H100, for a CIFAR-10 epoch of 50k images at batch 128
        epoch_50k = fast * 50_000 / n
        print(f"H100 targets: 50k-image epoch <= 2 s (here {epoch_50k:.2f} s), selection round <= 0.10 of an epoch "
              f"(here {(t_extract + t_select) / fast:.2f})")


if __name__ == "__main__":
    run_cli(lambda: main(get_args_parser().parse_args()))
