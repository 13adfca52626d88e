"""The validation layer both trainers share: a combination of flags that cannot work is refused here, in one line
naming the flags and what to use instead, before any data is loaded or any run directory is made.

:func:`engine.loop.fit` calls :func:`check_run_args` once the trainer's ``resolve_args`` has filled the recipe's
defaults (and refused what only that trainer knows, e.g. ``--forget_rate`` without Co-teaching). Everything this
layer lets through must run; ``tests/test_combinations.py`` runs a pairwise covering set of the flags to hold it to
that. What it refuses, and why, is the README's table "What is refused, and why".
"""
from __future__ import annotations

import argparse
import os

from data_loader import REAL_DATASETS
from data_loader.datasets import USER_DATASETS
from data_loader.cifar_n import check_human_noise
from data_loader.transforms import AUGMENTATION
from data_loader.user_data import has_clean_labels, npz_kind
from fine.distributed import resolve_device
from fine.errors import UserError
from fine.models import ARCHS, SAMPLE_DIMS

# What one sample of each kind of data is, and the dimensions of one sample (as fine.models.SAMPLE_DIMS counts them).
_KIND_DIMS = {"image": 3, "signal": 2, "table": 1}
_KIND_NAMES = {"image": "images (C, H, W)", "signal": "signals (C, L)", "table": "table rows (D,)"}


def data_kind(args: argparse.Namespace) -> str:
    """What one sample of ``--dataset`` is: "image", "table" or "signal" (a user's .npz says so in its header, read
    without loading the data; every other dataset holds images)."""
    return npz_kind(args.data_path) if args.dataset == "npz" else "image"


def default_decay_start(epochs: int) -> int:
    """linear-decay's default start: two thirds of ``--epochs`` (rounded down), the published Co-teaching+ runs'
    epoch 80 of 120 (FO hyperparams/coteach/config_cifar*_coteach+_*.json), so every run decays for its last third."""
    return 2 * epochs // 3


def check_run_args(args: argparse.Namespace) -> None:
    """Refuse a combination of resolved flags that cannot run, with a one-line :class:`UserError`; also resolves
    ``--decay_start`` under linear-decay (default: :func:`default_decay_start` of ``--epochs``)."""
    _check_schedule(args)
    _check_arch(args)
    _check_labels(args)
    _check_speed(args)


def _check_schedule(args: argparse.Namespace) -> None:
    if args.lr_schedule != "linear-decay":
        if args.decay_start is not None:
            raise UserError(f"--decay_start applies to --lr_schedule linear-decay, not {args.lr_schedule}; drop it "
                            f"or add --lr_schedule linear-decay")
        return
    if args.decay_start is None:
        args.decay_start = default_decay_start(args.epochs)
    elif args.decay_start >= args.epochs:
        raise UserError(f"--decay_start {args.decay_start} is not before --epochs {args.epochs}, so linear-decay "
                        f"would never lower the lr; pass a smaller --decay_start or leave it unset (2/3 of --epochs)")


def _check_arch(args: argparse.Namespace) -> None:
    kind = data_kind(args)
    if SAMPLE_DIMS[args.arch] != _KIND_DIMS[kind]:
        fits = [a for a in ARCHS if SAMPLE_DIMS[a] == _KIND_DIMS[kind]]
        raise UserError(f"--arch {args.arch} takes {_KIND_NAMES[_kind_of(args.arch)]} but --dataset {args.dataset} "
                        f"holds {_KIND_NAMES[kind]}; use --arch {' or '.join(fits)} (or leave --arch unset)")
    if args.pretrained not in (None, "none") and args.arch != "resnet50":
        raise UserError(f"--pretrained {args.pretrained} applies to --arch resnet50 only, not {args.arch}; drop "
                        f"--pretrained or use --arch resnet50")


def _kind_of(arch: str) -> str:
    return next(kind for kind, dims in _KIND_DIMS.items() if dims == SAMPLE_DIMS[arch])


def _check_labels(args: argparse.Namespace) -> None:
    real = args.dataset in REAL_DATASETS
    if real and (args.noise_kind != "real" or args.noise_file is not None):
        raise UserError(f"--dataset {args.dataset} comes with real label noise; pass --noise_kind real (or leave "
                        f"it unset) and no --noise_file, not --noise_kind {args.noise_kind}"
                        f"{' --noise_file' if args.noise_file else ''}")
    if not real and args.noise_kind == "real":
        raise UserError(f"--noise_kind real is for {' and '.join(REAL_DATASETS)}; --dataset {args.dataset} takes "
                        f"synthetic noise (sym, asym, ...) or, for your own data, none")
    check_human_noise(args.dataset, args.noise_kind, args.noise_label)
    if getattr(args, "forget_rate", None) == "realised":
        own_labels = args.dataset in USER_DATASETS and args.noise_kind == "none" and args.noise_file is None
        if real or (own_labels and not has_clean_labels(args.dataset, args.data_path)):
            raise UserError(f"--forget_rate realised measures the noise rate against clean labels, which --dataset "
                            f"{args.dataset} with --noise_kind {args.noise_kind} lacks; pass --forget_rate auto "
                            f"(FINE's estimate) or a number")


def _check_speed(args: argparse.Namespace) -> None:
    device = resolve_device(args.device)
    if args.amp == "fp16" and device.type != "cuda":
        raise UserError(f"--amp fp16 needs a CUDA device, not --device {args.device} ({device.type}); use --amp "
                        f"bf16 or --amp off there")
    if args.data_on_gpu == "on" and args.dataset not in AUGMENTATION:
        raise UserError(f"--data_on_gpu on holds augmented images on the device, for {', '.join(AUGMENTATION)}; "
                        f"--dataset {args.dataset} has no device-side augmentation: use --data_on_gpu off")
    if args.sync_bn:
        if "WORLD_SIZE" not in os.environ:
            raise UserError("--sync_bn synchronises batch norms across torchrun processes; launch with torchrun "
                            "(--nproc_per_node 1 or more) or drop it")
        if device.type != "cuda":
            raise UserError(f"--sync_bn needs CUDA devices (SyncBatchNorm does not run on --device {args.device}); "
                            f"drop it")
