"""The run skeleton every trainer shares: set-up, the epoch loop's bookkeeping, resume and the summary.

A trainer subclasses :class:`Trainer` and writes only its method: its flags and recipe (``resolve_args``), its
epoch (``train_epoch``) and the state that epoch keeps. :func:`fit` does the rest, the same way for every trainer:

1. resolve the flags and refuse a combination that cannot run (:func:`engine.checks.check_run_args`; ``--dry_run``
   prints them and stops), join torchrun's process group (a plain run is a world of size 1), load the data and its
   noisy labels, name the run directory (refused if it exists, unless ``--resume`` / ``--overwrite``);
2. build the networks (model, DDP wrapper, optimiser, lr schedule, loss scaler each) and the trainer, then make the
   run directory: a run that fails before its first epoch leaves none behind;
3. every epoch: ``trainer.train_epoch``, then the lr step, the evaluation (validation, test, extra test sets), the
   best/last bookkeeping, ``metrics.jsonl`` and TensorBoard, and an atomic ``last.pt`` (``best.pt`` when the
   validation accuracy improved);
4. ``summary.json``.

Selection rounds go through :meth:`Run.extract` (eval-mode features of this process's share of the samples) and
:meth:`Run.record_round` (quality, ``selection/round_*.npz``, metrics and TensorBoard), whatever the trainer.
"""
from __future__ import annotations

import abc
import argparse
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from data_loader import NoisyDataset
from data_loader.tensor_loader import TensorLoader
from data_loader.transforms import AUGMENTATION
from engine.args import check_common_args
from engine.checks import check_run_args
from engine.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from engine.data import TrainBatches, TrainData, augment_generator, epoch_generator, load_data
from engine.logger import RunLogger, jsonable, write_json
from engine.optim import EpochSchedule, build_optimizer
from engine.rounds import log_round, save_selection_round, selection_quality
from engine.rundir import open_run_dir, plan_run_dir, print_args, seed_everything
from fine.amp import configure_backends, grad_scaler, prepare_model, unwrap_model
from fine.distributed import (ShardedSampler, World, broadcast_buffers, cleanup, init_distributed, on_main, print0,
                              shard_indices, wrap_ddp)
from fine.errors import UserError
from fine.evaluation import evaluation_loader, predict, topk_accuracy
from fine.features import extract_features
from fine.losses import Loss
from fine.models import create_model
from fine.selection import Selection


@dataclass
class Networks:
    """The networks of a run, each with its own optimiser, lr schedule and loss scaler.

    ``models`` are the plain (possibly compiled) modules used for evaluation, feature extraction and checkpoints;
    ``train_models`` what the training steps go through (the DDP wrappers under torchrun, else ``models``).
    """

    models: list[nn.Module]
    train_models: list[nn.Module]
    optimizers: list[torch.optim.Optimizer]
    schedulers: list[EpochSchedule]
    scalers: list[torch.amp.GradScaler]


def build_networks(args: argparse.Namespace, count: int, num_classes: int, input_shape: tuple[int, ...],
                   world: World) -> Networks:
    """``count`` freshly initialised networks of ``--arch`` for inputs of one sample's ``input_shape`` on the run's
    device, prepared for ``--channels_last``, ``--compile`` and torchrun (``--sync_bn``), each with its optimiser,
    schedule and ``--amp`` loss scaler."""
    models = [prepare_model(create_model(args.arch, num_classes, pretrained=args.pretrained,
                                         input_shape=input_shape, init=args.init).to(world.device),
                            channels_last=args.channels_last, compile=args.compile) for _ in range(count)]
    train_models = [wrap_ddp(m, world, sync_bn=args.sync_bn) for m in models]
    scalers = [grad_scaler(world.device, args.amp) for _ in models]
    optimizers = [build_optimizer(m, args) for m in models]
    schedulers = [EpochSchedule(opt, args) for opt in optimizers]
    return Networks(models, train_models, optimizers, schedulers, scalers)


@dataclass
class Run:
    """What a trainer's epoch works with: the flags, this process's place, the data and the networks.

    ``resident`` holds the training images on the device (``--data_on_gpu on``), else None.
    """

    args: argparse.Namespace
    world: World
    data: TrainData
    run_dir: Path
    nets: Networks
    resident: TensorLoader | None
    logger: RunLogger | None  # rank 0 only
    state: dict = field(default_factory=dict)  # the skeleton's bookkeeping (best/last/selection), checkpointed

    @property
    def device(self) -> torch.device:
        return self.world.device

    @property
    def num_classes(self) -> int:
        return self.data.bundle.num_classes

    @property
    def num_train(self) -> int:
        return len(self.data.bundle.train)

    def batches(self, indices: torch.Tensor, *, batch_size: int, augment: torch.Generator,
                shuffle: torch.Generator | None = None, two_views: bool = False) -> TrainBatches:
        """This process's augmented (``--augment off``: un-augmented) training batches of the samples ``indices``
        (dataset indices): its share of them in the order given, or with ``shuffle`` of a fresh shuffle on every pass
        (see :class:`TrainBatches`)."""
        sampler = ShardedSampler(indices, shuffle, world_size=self.world.world_size, rank=self.world.rank)
        bundle, augment_images = self.data.bundle, self.args.augment == "on"
        dataset = bundle.train if augment_images else bundle.train.view(bundle.test_transform)
        return TrainBatches(sampler, dataset=dataset, resident=self.resident, batch_size=batch_size,
                            augment=augment, two_views=two_views, num_workers=self.args.workers,
                            pin_memory=self.device.type == "cuda", augment_images=augment_images)

    def extract(self, model: nn.Module, pool: torch.Tensor,
                augment: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Eval-mode features and logits of this process's share of the samples ``pool`` (n,) dataset indices.

        The images are un-augmented (``--aug_features``: augmented, as the published selection code did).
        Returns ``features`` (n_local, D), ``logits`` (n_local, C) on the device where they fit
        (:func:`fine.features.extract_features`) and ``positions`` (n_local,): the rows' positions in ``pool``
        (all of them, in order, in a plain run), as :func:`fine.selection.select_samples` takes them.
        """
        args = self.args
        positions = shard_indices(torch.arange(len(pool)), world_size=self.world.world_size, rank=self.world.rank,
                                  shuffle=False, pad=False)
        indices = pool[positions]
        if self.resident is not None:
            loader = self.resident.epoch(indices, shuffle=False, augment=args.aug_features, generator=augment,
                                         batch_size=4 * args.batch_size)
        else:
            bundle = self.data.bundle
            dataset = bundle.train if args.aug_features else bundle.train.view(bundle.test_transform)
            loader = DataLoader(dataset, batch_size=4 * args.batch_size, sampler=indices.tolist(),
                                num_workers=args.workers, pin_memory=self.device.type == "cuda")
        features, logits = extract_features(unwrap_model(model), loader, indices, self.device, amp=args.amp)
        return features, logits, positions

    def record_round(self, tag: str, sel: Selection, pool: torch.Tensor, epoch: int, row: dict, *,
                     seconds: float, file_suffix: str = "", summary: bool = False) -> None:
        """Book one selection round of the samples ``pool``: its quality and ``seconds`` into ``row`` under
        ``tag`` (e.g. ``select/net1``), per-class recall and histograms to TensorBoard, the round's ``.npz`` under
        ``selection/`` (``round_<epoch><file_suffix>.npz``); with ``summary``, the quality the run's summary
        reports."""
        noisy = self.data.noisy[pool]
        is_clean = None if self.data.is_clean is None else self.data.is_clean[pool]
        quality = selection_quality(sel, is_clean, noisy, self.num_classes)
        row[f"{tag}/seconds"] = seconds
        row.update({f"{tag}/{k}": v for k, v in quality.items()})
        if summary and is_clean is not None:
            self.state["selection"] = {k: v for k, v in quality.items() if k != "auc"}
        if self.logger is not None:
            log_round(self.logger, tag, sel, is_clean, quality, epoch)
            clean = self.data.clean
            save_selection_round(self.run_dir / "selection" / f"round_{epoch:03d}{file_suffix}.npz", sel,
                                 noisy.numpy(), None if clean is None else clean[pool].numpy(),
                                 samples=None if self.args.num_batches is None else pool)


class Trainer(abc.ABC):
    """A training method on the shared skeleton; subclasses fill in the class attributes and the abstract methods."""

    name: ClassVar[str]  # the trainer's folder under --output, e.g. "dynamic_selection"
    ensemble: ClassVar[bool] = False  # report the networks' ensemble (their summed logits), else network 1
    later_epoch_wins_ties: ClassVar[bool] = False  # a validation accuracy equal to the best so far moves the best

    def __init__(self, run: Run) -> None:
        self.run, self.args = run, run.args
        self.losses: list[Loss] | None = None  # per network, when the method keeps per-sample state (ELR)

    @staticmethod
    @abc.abstractmethod
    def resolve_args(args: argparse.Namespace) -> argparse.Namespace:
        """Check the method's flags and fill unset ones from its recipe (before any data is loaded)."""

    @staticmethod
    def num_networks(args: argparse.Namespace) -> int:
        return 1

    @staticmethod
    @abc.abstractmethod
    def describe(args: argparse.Namespace) -> dict[str, Any]:
        """``method``, ``loss``, ``selector`` and a readable ``label`` (e.g. "F-Coteaching") of the run."""

    @staticmethod
    @abc.abstractmethod
    def run_name_parts(args: argparse.Namespace) -> list[str]:
        """The readable part of the run directory's name (its hash covers every defining flag)."""

    @staticmethod
    def resolve_with_data(args: argparse.Namespace, data: TrainData) -> None:
        """Resolve flags that depend on the loaded data (before the run directory is named)."""

    @abc.abstractmethod
    def train_epoch(self, epoch: int, row: dict, order: torch.Generator, augment: torch.Generator) -> None:
        """Train one epoch and put its metrics in ``row``, ``train/loss`` included (None when nothing trained).

        ``order`` draws the epoch's sample order (the same on every process), ``augment`` this process's
        augmentations on the device-resident path.
        """

    def state_dict(self) -> dict:
        """The method's own state to checkpoint (e.g. the current selection)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def fit(trainer_cls: type[Trainer], args: argparse.Namespace) -> dict:
    """Run ``trainer_cls`` with the parsed flags ``args``; returns the summary (``{}`` when the run had already
    finished; the resolved configuration with ``--dry_run``)."""
    check_common_args(args)
    args = trainer_cls.resolve_args(args)
    check_run_args(args)
    if args.dry_run:
        config = {"trainer": trainer_cls.name, **jsonable(vars(args))}
        print(json.dumps(config, sort_keys=True))
        return config
    # Set-up: this process's place, the data, the run directory.
    world = init_distributed(args.device)
    if args.workers is None:
        args.workers = 4 if world.device.type == "cuda" else 0
    data = load_data(args)
    trainer_cls.resolve_with_data(args, data)
    resident = _resident_images(args, data.bundle.train, world.device)
    run_dir, resuming = on_main(lambda: plan_run_dir(args, trainer_cls.name, trainer_cls.run_name_parts(args)))
    if not args.overwrite and (run_dir / "summary.json").exists():
        print0(f"{run_dir} already finished; nothing to do")
        return {}
    bundle = data.bundle
    if world.is_main:
        print_args(args)
    print0(f"run directory: {run_dir}\ntrain {len(bundle.train)}, validation {len(bundle.val) if bundle.val else 0}, "
           f"test {len(bundle.test)}; {bundle.noise_info}; {world.world_size} process(es)")

    # The networks and the method, freshly initialised or restored from last.pt.
    seed_everything(args.seed)
    configure_backends(world.device, args.amp)
    nets = build_networks(args, trainer_cls.num_networks(args), bundle.num_classes, tuple(bundle.test[0][0].shape),
                          world)
    run = Run(args, world, data, run_dir, nets, resident, logger=None, state=_fresh_state())
    trainer = trainer_cls(run)
    if resuming:
        _restore(run, trainer, load_checkpoint(run_dir / "last.pt"))
        print0(f"resumed from {run_dir / 'last.pt'} after epoch {run.state['epoch']}")
    elif args.init_from is not None:
        _restore(run, trainer, _fork_checkpoint(args, trainer_cls.num_networks(args)), method_state=False)
        print0(f"started from {args.init_from} after its epoch {run.state['epoch']}")
    if world.is_main:  # the run starts: only now does its directory exist
        open_run_dir(run_dir, args, trainer_cls.name)
        if bundle.standardization is not None:  # tables and signals: the training split's statistics
            write_json(run_dir / "standardization.json", {"kind": bundle.kind, **bundle.standardization})
    run.logger = RunLogger(run_dir, resume_epoch=run.state["epoch"] + 1) if world.is_main else None
    evaluation = _Evaluation(run, trainer_cls.ensemble)
    start = time.time() - run.state["elapsed"]

    for epoch in range(run.state["epoch"] + 1, args.epochs):
        row: dict = {"epoch": epoch, "lr": nets.optimizers[0].param_groups[0]["lr"]}
        order = epoch_generator(args.seed, epoch, world.rank)  # sample order, the same on every process
        augment = augment_generator(args.seed, epoch, world.rank)  # this process's augmentations (device path)
        trainer.train_epoch(epoch, row, order, augment)
        for loss in trainer.losses or []:  # each process updated its shard's per-sample state (ELR)
            loss.synchronize()
        broadcast_buffers([unwrap_model(m) for m in nets.models])  # every process evaluates rank 0's model
        if row["train/loss"] is not None and not math.isfinite(row["train/loss"]):
            raise UserError(f"training diverged at epoch {epoch} (loss {row['train/loss']}); the last good "
                            f"checkpoint is {run_dir / 'last.pt'}; lower --lr and start again")
        for scheduler in nets.schedulers:
            scheduler.step()
        evaluation.fill(row)
        _end_epoch(run, trainer, row, start)

    summary = on_main(lambda: _summarize(run, trainer_cls, time.time() - start, evaluation.has_val))
    cleanup()
    return summary


def _resident_images(args: argparse.Namespace, train: NoisyDataset, device: torch.device) -> TensorLoader | None:
    """The training images on the device for ``--data_on_gpu`` (auto: on for in-memory image sets on CUDA)."""
    if args.data_on_gpu == "auto":
        in_memory = isinstance(train, NoisyDataset) and args.dataset in AUGMENTATION
        args.data_on_gpu = "on" if device.type == "cuda" and in_memory else "off"
    if args.data_on_gpu == "off":
        return None
    return TensorLoader(train, args.dataset, batch_size=args.batch_size, device=device,
                        channels_last=args.channels_last)


def _fresh_state() -> dict:
    """The skeleton's bookkeeping before the first epoch; ``tests`` holds each epoch's reported test accuracy and
    ``published_tests`` the accuracy the published code reports per epoch (several networks: the best of them)."""
    return {"epoch": -1, "best_val": -math.inf, "best_test": None, "best_epoch": -1, "last_test": None,
            "tests": [], "published_tests": [], "selection": None, "elapsed": 0.0}


class _Evaluation:
    """Per-epoch evaluation: the reported accuracy (network 1's, or the ensemble's) on the validation, test and
    extra test sets, and each network's test accuracy. Each process predicts its share; results are gathered.

    The ensemble is the networks' summed logits, as DivideMix tests it (LiJunnan1992/DivideMix: Train_cifar.py:155).
    """

    def __init__(self, run: Run, ensemble: bool) -> None:
        args, bundle = run.args, run.data.bundle
        kw = dict(batch_size=4 * args.batch_size, num_workers=args.workers, pin_memory=run.device.type == "cuda")
        self.run, self.ensemble = run, ensemble
        self.test = evaluation_loader(bundle.test, **kw)
        self.val = evaluation_loader(bundle.val, **kw) if bundle.val is not None else None
        self.extra = {name: evaluation_loader(ds, **kw) for name, ds in bundle.extra_tests.items()}
        self.has_val = self.val is not None

    def _reported(self, loader: DataLoader, *, per_network: bool = False) -> tuple[torch.Tensor, torch.Tensor,
                                                                                       torch.Tensor]:
        """Scores (N, C) of the reported predictor, each network's logits (M, N, C) and the labels (N,)."""
        models = self.run.nets.models if (self.ensemble or per_network) else self.run.nets.models[:1]
        logits, labels = predict(models, loader, self.run.device, amp=self.run.args.amp)
        scores = logits.sum(0) if self.ensemble else logits[0]  # DivideMix's ensemble sums logits
        return scores, logits, labels

    def fill(self, row: dict) -> None:
        """Put ``test/acc``, ``test/acc_top5``, ``test/acc_net<i>`` (several networks), the extra test sets' top-1
        and top-5 and ``val/acc`` (None without a validation split) into ``row``."""
        several = len(self.run.nets.models) > 1
        scores, logits, labels = self._reported(self.test, per_network=several)
        row["test/acc"], row["test/acc_top5"] = topk_accuracy(scores, labels, (1, 5))
        if several:
            for i, net_logits in enumerate(logits):
                row[f"test/acc_net{i + 1}"] = topk_accuracy(net_logits, labels)[0]
        for name, loader in self.extra.items():
            scores, _, labels = self._reported(loader)
            row[f"test_{name}/acc"], row[f"test_{name}/acc_top5"] = topk_accuracy(scores, labels, (1, 5))
        row["val/acc"] = topk_accuracy(*self._reported(self.val)[::2])[0] if self.val is not None else None


def _end_epoch(run: Run, trainer: Trainer, row: dict, start: float) -> None:
    """Best/last bookkeeping, metrics row, checkpoints and the console line of an evaluated epoch."""
    state, epoch = run.state, row["epoch"]
    # The best epoch is chosen on the (noisy) validation split when there is one, else on test accuracy.
    criterion = row["val/acc"] if row["val/acc"] is not None else row["test/acc"]
    improved = criterion >= state["best_val"] if trainer.later_epoch_wins_ties else criterion > state["best_val"]
    if improved:
        state.update(best_val=criterion, best_test=row["test/acc"], best_epoch=epoch)
    nets = [row[k] for k in row if k.startswith("test/acc_net")]
    state["tests"].append(row["test/acc"])
    state["published_tests"].append(max(nets) if nets and not trainer.ensemble else row["test/acc"])
    state.update(epoch=epoch, last_test=row["test/acc"], elapsed=time.time() - start)
    if run.logger is not None:
        run.logger.epoch_row(row)
        ckpt = _checkpoint(run, trainer)
        save_checkpoint(ckpt, run.run_dir / "last.pt")
        if improved:
            save_checkpoint(ckpt, run.run_dir / "best.pt")
        if epoch in (run.args.save_epochs or []):
            save_checkpoint(ckpt, run.run_dir / f"epoch_{epoch:03d}.pt")
    loss = "no training" if row["train/loss"] is None else f"loss {row['train/loss']:.4f}"
    val = f" val {row['val/acc']:.2f}" if row["val/acc"] is not None else ""
    print0(f"epoch {epoch:3d} {loss}{val} test {row['test/acc']:.2f} "
           f"(best {state['best_test']:.2f} @ {state['best_epoch']})")


def _checkpoint(run: Run, trainer: Trainer) -> dict:
    """A self-describing checkpoint: flags, bookkeeping, the method's state, every network with its optimiser,
    schedule and loss scaler, the losses' per-sample state, RNG states. Compiled models are saved by their
    underlying module's parameter names."""
    nets = run.nets
    return {"args": vars(run.args), "state": run.state, "trainer": trainer.state_dict(),
            "models": [unwrap_model(m).state_dict() for m in nets.models],
            "optimizers": [o.state_dict() for o in nets.optimizers],
            "schedulers": [s.state_dict() for s in nets.schedulers],
            "scalers": [s.state_dict() for s in nets.scalers],
            "losses": [loss.state_dict() for loss in trainer.losses or []], "rng": rng_state()}


# Flags a run started with --init_from must share with the checkpoint: they define the data, the networks and the
# optimisation the checkpoint's state belongs to.
FORK_SHARED = ("dataset", "noise_kind", "noise_rate", "noise_label", "noise_file", "noise_seed", "val_size",
               "num_batches", "loss", "arch", "init", "pretrained", "epochs", "batch_size", "lr", "optimizer",
               "momentum", "weight_decay", "lr_schedule", "milestones", "gamma", "decay_start", "seed", "amp")


def _fork_checkpoint(args: argparse.Namespace, num_networks: int) -> dict:
    """The ``--init_from`` checkpoint, once it is known to fit this run (one-line UserError otherwise)."""
    path = Path(args.init_from)
    if not path.is_file():
        raise UserError(f"--init_from {path} does not exist; pass a checkpoint (last.pt or epoch_NNN.pt) of a run")
    ckpt = load_checkpoint(path)
    differ = [f"--{k} {ckpt['args'].get(k)} there, {getattr(args, k, None)} here" for k in FORK_SHARED
              if ckpt["args"].get(k) != getattr(args, k, None)]
    if differ:
        raise UserError(f"--init_from {path} was trained with other flags ({'; '.join(differ)}); pass the same")
    if len(ckpt["models"]) != num_networks:
        raise UserError(f"--init_from {path} holds {len(ckpt['models'])} network(s) but this method trains "
                        f"{num_networks}; start from a run of a method with as many")
    if ckpt["state"]["epoch"] + 1 >= args.epochs:
        raise UserError(f"--init_from {path} is from epoch {ckpt['state']['epoch']}, the last of --epochs "
                        f"{args.epochs}; pass an earlier checkpoint")
    return ckpt


def _restore(run: Run, trainer: Trainer, ckpt: dict, *, method_state: bool = True) -> None:
    """Load what :func:`_checkpoint` saved into the run's networks, the RNGs and, with ``method_state``, the
    trainer (a run started ``--init_from`` another run keeps its own method's fresh state)."""
    nets = run.nets
    for i, model in enumerate(nets.models):
        unwrap_model(model).load_state_dict(ckpt["models"][i])
        nets.optimizers[i].load_state_dict(ckpt["optimizers"][i])
        nets.schedulers[i].load_state_dict(ckpt["schedulers"][i])
        nets.scalers[i].load_state_dict(ckpt["scalers"][i])
    for loss, saved in zip(trainer.losses or [], ckpt["losses"]):
        loss.load_state_dict(saved)
    run.state = ckpt["state"]
    if method_state:
        trainer.load_state_dict(ckpt["trainer"])
    set_rng_state(ckpt["rng"])


def _summarize(run: Run, trainer_cls: type[Trainer], wall_time: float, has_val: bool) -> dict:
    """Write and return the run's ``summary.json`` (one schema for every trainer, read by ``engine.report``).

    Test accuracies (%) under each protocol in use: ``best_test_acc`` at the best validation epoch (the honest one;
    the best test epoch without a validation split), ``max_test_acc`` the maximum over epochs of what the published
    code reports per epoch (two networks trained side by side: the better one, as FINE_official's Co-teaching
    trainers), ``last_test_acc`` the last epoch's and ``last10_mean_test_acc`` the mean of the last 10 epochs'.
    """
    args, state = run.args, run.state
    summary = {
        "trainer": trainer_cls.name, **trainer_cls.describe(args), "dataset": args.dataset,
        "noise_kind": args.noise_kind, "noise_rate": args.noise_rate, "noise_label": args.noise_label,
        "seed": args.seed, "arch": args.arch, "run_dir": str(run.run_dir), "epochs": args.epochs,
        "best_epoch": state["best_epoch"], "best_val_acc": state["best_val"] if has_val else None,
        "best_test_acc": state["best_test"], "max_test_acc": max(state["published_tests"]),
        "last_test_acc": state["last_test"], "last10_mean_test_acc": float(np.mean(state["tests"][-10:])),
        "selection": state["selection"],
        "wall_time_s": round(wall_time, 1), "finished": True,
    }
    run.logger.summary(summary)
    run.logger.close()
    print(f"done: best test {summary['best_test_acc']:.2f} (epoch {summary['best_epoch']}), "
          f"last test {summary['last_test_acc']:.2f}; {run.run_dir / 'summary.json'}")
    return summary
