"""Pieces every trainer shares: data and labels, optimiser, lr schedule, evaluation, checkpoints, summary."""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from data_loader import DatasetBundle, build_datasets
from fine.amp import autocast, unwrap_model
from fine.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from fine.distributed import gather_by_index, get_rank, get_world_size, shard_indices
from fine.logger import RunLogger
from fine.selection import Selection


def build_optimizer(model: nn.Module, args: argparse.Namespace) -> torch.optim.Optimizer:
    """SGD with momentum (the paper's default) or Adam (Co-teaching+), with ``args.lr`` and ``args.weight_decay``."""
    if getattr(args, "optimizer", "sgd") == "adam":
        return torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)


def lr_factor(args: argparse.Namespace, epoch: int) -> float:
    """Multiplier of the initial lr at ``epoch`` for ``args.lr_schedule``."""
    if args.lr_schedule == "multistep":
        return args.gamma ** sum(epoch >= m for m in args.milestones)
    if args.lr_schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * epoch / args.epochs))
    if epoch < args.decay_start:  # linear-decay
        return 1.0
    return (args.epochs - epoch) / max(args.epochs - args.decay_start, 1)


class EpochSchedule(torch.optim.lr_scheduler.LambdaLR):
    """Per-epoch lr schedule; for Adam under linear-decay, beta1 drops from 0.9 to 0.1 at ``decay_start``
    as in the Co-teaching papers' code."""

    def __init__(self, optimizer: torch.optim.Optimizer, args: argparse.Namespace) -> None:
        self.decay_start = args.decay_start if args.lr_schedule == "linear-decay" else None
        super().__init__(optimizer, lambda epoch: lr_factor(args, epoch))

    def step(self, epoch: int | None = None) -> None:
        super().step()
        if self.decay_start is not None and isinstance(self.optimizer, torch.optim.Adam):
            beta1 = 0.1 if self.last_epoch >= self.decay_start else 0.9
            for group in self.optimizer.param_groups:
                group["betas"] = (beta1, group["betas"][1])


def build_scheduler(optimizer: torch.optim.Optimizer, args: argparse.Namespace) -> EpochSchedule:
    """The lr schedule of ``args``; call ``step()`` once per epoch."""
    return EpochSchedule(optimizer, args)


def epoch_generator(seed: int, epoch: int, rank: int = 0) -> torch.Generator:
    """The generator of the epoch's sample order, seeded from (seed, epoch) and the same on every process, so a
    resumed run repeats the order exactly and torchrun processes agree on it.

    Also reseeds torch's global generator, which the dataset transforms draw from when ``num_workers`` is 0,
    differently on each ``rank`` so that the processes draw different augmentations.
    """
    torch.manual_seed(seed * 100_003 + epoch + 7919 * rank)
    return torch.Generator().manual_seed(seed * 100_003 + epoch)


def augment_generator(seed: int, epoch: int, rank: int = 0) -> torch.Generator:
    """The generator of one process's augmentations in an epoch on the device-resident path, from (seed, epoch,
    rank): repeatable on resume, different between processes and independent of the sample-order generator."""
    state = np.random.SeedSequence([seed, epoch, rank, 1]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def evaluation_loader(dataset: Dataset, *, batch_size: int, num_workers: int, pin_memory: bool) -> DataLoader:
    """A DataLoader over this process's share of ``dataset`` for :func:`predict` (all of it in a plain run; under
    torchrun each sample goes to exactly one process), in index order."""
    shard = shard_indices(torch.arange(len(dataset)), world_size=get_world_size(), rank=get_rank(), shuffle=False,
                          pad=False)
    return DataLoader(dataset, batch_size=batch_size, sampler=shard.tolist(), num_workers=num_workers,
                      pin_memory=pin_memory)


@torch.no_grad()
def predict(models: list[nn.Module], loader: DataLoader, device: torch.device, *,
            amp: str = "off") -> tuple[torch.Tensor, torch.Tensor]:
    """Mean softmax of ``models`` (an ensemble of one or more) on the whole of ``loader.dataset``.

    ``loader`` yields ``(x, y, index)``; under torchrun each process passes its share (:func:`evaluation_loader`)
    and the rows are gathered by index, so every process gets the same result. The forward passes run under
    ``amp`` autocast (:func:`fine.amp.autocast`).

    Returns ``probs (N, C)`` float32 and ``labels (N,)`` in dataset order, on the CPU.
    """
    for m in models:
        m.eval()
    probs, labels, indices = [], [], []
    for x, y, index in loader:
        x = x.to(device, non_blocking=True)
        with autocast(device, amp):
            outputs = [m(x) for m in models]
        probs.append(torch.stack([out.float().softmax(1) for out in outputs]).mean(0).cpu())
        labels.append(torch.as_tensor(y))
        indices.append(torch.as_tensor(index))
    n = len(loader.dataset)
    index = torch.cat(indices)
    return gather_by_index(torch.cat(probs), index, n), gather_by_index(torch.cat(labels), index, n)


def evaluate(models: nn.Module | list[nn.Module], loader: DataLoader, device: torch.device,
             topk: tuple[int, ...] = (1,), *, amp: str = "off") -> float | list[float]:
    """Top-k accuracy (%) of a model, or of the mean softmax of several, against the loader's labels.

    Returns one float for the default ``topk=(1,)``, else a list with one accuracy per k. See :func:`predict`.
    """
    models = models if isinstance(models, list) else [models]
    was_training = [m.training for m in models]
    probs, labels = predict(models, loader, device, amp=amp)
    for m, mode in zip(models, was_training):
        m.train(mode)
    ranked = probs.topk(min(max(topk), probs.shape[1]), dim=1).indices
    hits = [100.0 * (ranked[:, :k] == labels[:, None]).any(1).float().mean().item() for k in topk]
    return hits[0] if topk == (1,) else hits


def evaluate_extra_tests(models: nn.Module | list[nn.Module], loaders: dict[str, DataLoader],
                         device: torch.device, *, amp: str = "off") -> dict[str, float]:
    """Top-1 and top-5 accuracy (%) on each extra test set (e.g. WebVision's ILSVRC12 val), keyed for the log."""
    row = {}
    for name, loader in loaders.items():
        row[f"test_{name}/acc"], row[f"test_{name}/acc_top5"] = evaluate(models, loader, device, topk=(1, 5), amp=amp)
    return row


def save_selection_round(path: Path, sel: Selection, noisy_labels: np.ndarray, clean_labels: np.ndarray | None,
                         samples: torch.Tensor | None = None) -> None:
    """Save one round's selection (``indices``, ``scores``, ``clean_prob``, ``mask``, labels) as ``.npz``.

    ``samples`` (n,): the dataset indices of ``sel``'s rows when it covers a subset of the training set (saved as
    ``samples``; ``indices`` then holds the selected samples' dataset indices, and the other arrays are per row).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = sel.clean_mask.nonzero().squeeze(1).cpu()
    arrays = {"indices": (rows if samples is None else samples.cpu()[rows]).numpy(),
              "mask": sel.clean_mask.cpu().numpy(), "scores": sel.scores.float().cpu().numpy(),
              "clean_prob": sel.clean_prob.float().cpu().numpy(), "noisy_labels": np.asarray(noisy_labels)}
    if clean_labels is not None:
        arrays["clean_labels"] = np.asarray(clean_labels)
    if samples is not None:
        arrays["samples"] = samples.cpu().numpy()
    tmp = path.with_name(f".{path.stem}.tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)


@dataclass
class TrainData:
    """The datasets of a run and its training labels as tensors.

    ``noisy`` (N,) long: the labels training sees; ``clean`` (N,) long or None when unknown (real-world noise);
    ``is_clean`` (N,) bool = ``noisy == clean`` or None.
    """

    bundle: DatasetBundle
    noisy: torch.Tensor
    clean: torch.Tensor | None
    is_clean: torch.Tensor | None


def load_data(args: argparse.Namespace) -> TrainData:
    """Build the run's datasets (noise and split seeded by ``--noise_seed``, default ``--seed``)."""
    noise_seed = args.seed if args.noise_seed is None else args.noise_seed
    bundle = build_datasets(args.dataset, args.data_path, noise_kind=args.noise_kind, noise_rate=args.noise_rate,
                            seed=noise_seed, noise_file=args.noise_file, val_size=args.val_size,
                            noise_label=args.noise_label, imagenet_path=args.imagenet_path)
    noisy = torch.as_tensor(bundle.train.noisy_labels, dtype=torch.long)
    known = bundle.train.clean_labels is not None
    clean = torch.as_tensor(bundle.train.clean_labels, dtype=torch.long) if known else None
    return TrainData(bundle, noisy, clean, (noisy == clean) if known else None)


def checkpoint(args: argparse.Namespace, state: dict, models: list[nn.Module], optimizers: list, schedulers: list,
               losses: list[nn.Module] | None = None, scalers: list | None = None) -> dict:
    """A self-describing checkpoint: args, trainer state, every model/optimiser/scheduler/loss/grad scaler, RNG
    states. Compiled models are saved by their underlying module's parameter names."""
    ckpt = {"args": vars(args), "state": state, "models": [unwrap_model(m).state_dict() for m in models],
            "optimizers": [o.state_dict() for o in optimizers], "schedulers": [s.state_dict() for s in schedulers],
            "rng": rng_state()}
    if losses is not None:
        ckpt["losses"] = [lf.state_dict() for lf in losses]
    if scalers is not None:
        ckpt["scalers"] = [sc.state_dict() for sc in scalers]
    return ckpt


def restore(path: Path, models: list[nn.Module], optimizers: list, schedulers: list,
            losses: list[nn.Module] | None = None, scalers: list | None = None) -> dict:
    """Load what :func:`checkpoint` saved into the given objects; returns the trainer state."""
    ckpt = load_checkpoint(path)
    for i, model in enumerate(models):
        unwrap_model(model).load_state_dict(ckpt["models"][i])
        optimizers[i].load_state_dict(ckpt["optimizers"][i])
        schedulers[i].load_state_dict(ckpt["schedulers"][i])
        if losses is not None:
            losses[i].load_state_dict(ckpt["losses"][i])
        if scalers is not None and "scalers" in ckpt:
            scalers[i].load_state_dict(ckpt["scalers"][i])
    set_rng_state(ckpt["rng"])
    print(f"resumed from {path} after epoch {ckpt['state']['epoch']}")
    return ckpt["state"]


def save_epoch(run_dir: Path, ckpt: dict, improved: bool) -> None:
    """Write ``last.pt`` every epoch and ``best.pt`` when the selection criterion improved (both atomically)."""
    save_checkpoint(ckpt, run_dir / "last.pt")
    if improved:
        save_checkpoint(ckpt, run_dir / "best.pt")


def summarize(logger: RunLogger, trainer: str, args: argparse.Namespace, state: dict, run_dir: Path,
              wall_time: float, best_val_acc: float | None) -> dict:
    """Write and return the run's ``summary.json`` (schema shared by both trainers and read by ``fine.report``)."""
    summary = {
        "trainer": trainer, "dataset": args.dataset, "noise_kind": args.noise_kind, "noise_rate": args.noise_rate,
        "noise_label": getattr(args, "noise_label", None), "method": args.method, "loss": args.loss,
        "selector": args.selector, "seed": args.seed, "arch": args.arch, "run_dir": str(run_dir),
        "epochs": args.epochs, "best_epoch": state["best_epoch"], "best_val_acc": best_val_acc,
        "best_test_acc": state["best_test"], "last_test_acc": state["last_test"], "selection": state["selection"],
        "wall_time_s": round(wall_time, 1), "finished": True,
    }
    logger.summary(summary)
    logger.close()
    print(f"done: best test {summary['best_test_acc']:.2f} (epoch {summary['best_epoch']}), "
          f"last test {summary['last_test_acc']:.2f}; {run_dir / 'summary.json'}")
    return summary
