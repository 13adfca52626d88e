"""Train DivideMix (Li, Socher and Hoi, ICLR 2020) or F-DivideMix under label noise.

Two networks warm up with cross-entropy on all data. Then, every epoch, each network's selector turns the training
set into a clean probability per sample; each network trains with MixMatch on the split made by its *peer*
(co-divide): samples whose clean probability exceeds ``--p_threshold`` are labelled (their labels co-refined), the
rest unlabelled (their labels co-guessed by both networks).
  --selector loss-gmm   DivideMix: 2-component GMM on the normalised per-sample cross-entropy
  --selector fine       F-DivideMix: FINE on eval-mode penultimate features of un-augmented images

    python -m dividemix.train --dataset cifar10 --noise_kind sym --noise_rate 0.5 --selector fine

With ``--num_batches`` (the Clothing1M recipe) every epoch works on a fresh class-balanced draw of
``num_batches * 2 * batch_size`` training samples, as the published DivideMix code does: warm-up trains on it and each
network splits only it, so a round costs as much as an epoch, not a pass over the million images.

Under ``torchrun`` each process trains both networks on its share of every epoch's samples (DDP), extracts the
outputs of its share of the training set, and all processes make the same split from the combined outputs.
"""
from __future__ import annotations

import argparse
import copy
import math
import time
from collections.abc import Iterable, Iterator
from itertools import islice

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from data_loader import NoisyDataset
from data_loader.sampling import balanced_subset
from data_loader.tensor_loader import TensorLoader
from data_loader.transforms import AUGMENTATION
from dividemix.mixmatch import (co_guess, co_refine, linear_rampup, mixup, neg_entropy_penalty, soft_cross_entropy,
                                uniform_prior_penalty, unlabelled_mse)
from dividemix.recipes import recipe
from fine.amp import autocast, configure_backends, grad_scaler, prepare_model, unwrap_model
from fine.args import add_common_args, add_speed_args, check_common_args, fill_defaults
from fine.distributed import (ShardedRandomSampler, all_reduce_sum, cleanup, gather_by_index, init_distributed,
                              local_module, on_main, print0, shard_indices, wrap_ddp)
from fine.errors import UserError, run_cli
from fine.features import extract_features
from fine.logger import RunLogger
from fine.models import create_model
from fine.run import prepare_run_dir, print_args, seed_everything
from fine.selection import Selection, fine_select, fine_select_distributed, loss_gmm_select, selection_metrics
from fine.training import (augment_generator, build_optimizer, build_scheduler, checkpoint, epoch_generator,
                           evaluate_extra_tests, evaluation_loader, load_data, predict, restore, save_epoch,
                           save_selection_round, summarize)

SELECTORS = ("loss-gmm", "fine")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dividemix.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    add_speed_args(parser)
    g = parser.add_argument_group("DivideMix")
    g.add_argument("--selector", type=str, default="loss-gmm", choices=SELECTORS,
                   help="how each network splits the training set: loss-gmm (DivideMix) or fine (F-DivideMix)")
    g.add_argument("--warmup", type=int, default=None,
                   help="epochs of cross-entropy on all data before the first split (default per dataset)")
    g.add_argument("--p_threshold", type=float, default=None,
                   help="a sample is labelled when its clean probability exceeds this (default 0.5, 0.6 at 90%% "
                        "symmetric noise)")
    g.add_argument("--lambda_u", type=float, default=None,
                   help="weight of the unlabelled loss after its 16-epoch ramp (default per dataset and noise)")
    g.add_argument("--T", type=float, default=0.5, help="sharpening temperature of refined and guessed labels")
    g.add_argument("--alpha", type=float, default=None,
                   help="mixup Beta(alpha, alpha) concentration (default 4; 0.5 on clothing1m and webvision)")
    g.add_argument("--loss_history", type=int, default=None,
                   help="loss-gmm: fit the GMM on the normalised loss averaged over this many recent epochs "
                        "(default 5 at 90%% symmetric noise, else 1)")
    return parser


def resolve_args(args: argparse.Namespace) -> argparse.Namespace:
    """Check the flags and fill unset ones from the paper's recipe."""
    check_common_args(args)
    if args.selector == "fine" and args.loss_history is not None:
        raise UserError("--loss_history applies to --selector loss-gmm only; drop it")
    args.method, args.loss = "dividemix", "ce"
    fill_defaults(args, recipe(args.dataset, args.noise_kind, args.noise_rate))
    if args.lambda_u is None:
        raise UserError(f"DivideMix publishes no lambda_u for {args.dataset} {args.noise_kind} noise "
                        f"{args.noise_rate:g}; pass --lambda_u (e.g. 25)")
    if args.lambda_u < 0:
        raise UserError(f"--lambda_u must be 0 or more, got {args.lambda_u}")
    if not 0.0 < args.p_threshold < 1.0:
        raise UserError(f"--p_threshold {args.p_threshold} is outside (0, 1)")
    if args.T <= 0 or args.alpha <= 0:
        raise UserError(f"--T and --alpha must be positive (got {args.T}, {args.alpha})")
    if args.warmup < 0:
        raise UserError(f"--warmup must be 0 or more, got {args.warmup}")
    if args.warmup >= args.epochs:
        raise UserError(f"--warmup {args.warmup} leaves no DivideMix epoch within --epochs {args.epochs}")
    if args.val_size:
        raise UserError(f"--val_size {args.val_size}: DivideMix trains on the whole training set and reports test "
                        f"accuracy; drop --val_size or pass 0")
    if args.selector == "fine":
        args.loss_history = None
    elif args.loss_history < 1:
        raise UserError(f"--loss_history must be at least 1, got {args.loss_history}")
    elif args.loss_history > 1 and args.num_batches is not None:
        raise UserError(f"--loss_history {args.loss_history} averages losses over epochs, but with --num_batches "
                        f"every epoch splits a different draw of samples; drop one of them")
    return args


class TwoViews(Dataset):
    """Items ``(view1, view2, label, index)``: two independent augmentations of each sample of ``dataset``."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int, int]:
        x1, y, index = self.dataset[i]
        x2, _, _ = self.dataset[i]
        return x1, x2, y, index


class DeviceBatches:
    """Re-iterable training batches served by a :class:`TensorLoader` (``--data_on_gpu on``).

    Each iteration takes a fresh order from ``sampler`` (this process's share of a new shuffle) and yields
    ``(x, y, index)``, or with ``two_views`` ``(x1, x2, y, index)``: the same samples under two independent
    augmentations, drawn from ``augment``. ``len`` is the number of batches of one pass.
    """

    def __init__(self, loader: TensorLoader, sampler: ShardedRandomSampler, augment: torch.Generator, *,
                 two_views: bool) -> None:
        self.loader, self.sampler, self.augment, self.two_views = loader, sampler, augment, two_views

    def __len__(self) -> int:
        return self.loader.num_batches(len(self.sampler))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        order = self.sampler.draw()
        if not self.two_views:
            yield from self.loader.epoch(order, shuffle=False, augment=True, generator=self.augment)
            return
        g1, g2 = (torch.Generator().manual_seed(int(s)) for s in torch.randint(2**62, (2,), generator=self.augment))
        views = zip(self.loader.epoch(order, shuffle=False, augment=True, generator=g1),
                    self.loader.epoch(order, shuffle=False, augment=True, generator=g2))
        for (x1, y, index), (x2, _, _) in views:
            yield x1, x2, y, index


def warmup_one_epoch(model: nn.Module, loader: DataLoader | DeviceBatches, optimizer: torch.optim.Optimizer, *,
                     confidence_penalty: bool, max_batches: int | None, device: torch.device,
                     desc: str, amp: str = "off", scaler: torch.amp.GradScaler | None = None) -> dict[str, float]:
    """One epoch of cross-entropy on all samples, plus the negative-entropy penalty when ``confidence_penalty``.

    ``model`` may be a DDP wrapper; the returned metrics are summed over all processes. ``amp`` and ``scaler``
    select mixed precision (:mod:`fine.amp`); the loss is computed in float32.
    """
    model.train()
    scaler = scaler or torch.amp.GradScaler(device.type, enabled=False)
    totals = torch.zeros(3, dtype=torch.float64, device=device)  # loss sum, hits vs noisy labels, samples
    num_iter = len(loader) if max_batches is None else min(len(loader), max_batches)
    batches = tqdm(islice(loader, num_iter), desc=desc, total=num_iter, leave=False, dynamic_ncols=True, disable=None)
    for x, y, _ in batches:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with autocast(device, amp):
            logits = model(x)
        logits = logits.float()
        loss = F.cross_entropy(logits, y)
        if confidence_penalty:
            loss = loss + neg_entropy_penalty(logits)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        totals += torch.stack([loss.detach() * len(y), (logits.detach().argmax(1) == y).sum(),
                               torch.tensor(len(y), device=device)]).double()
    loss_sum, hits, n = all_reduce_sum(totals).tolist()
    n = max(n, 1.0)
    return {"loss": loss_sum / n, "acc_noisy": 100 * hits / n}


def mixmatch_one_epoch(model: nn.Module, peer: nn.Module, labelled: DataLoader | DeviceBatches,
                       unlabelled: DataLoader | DeviceBatches | None, w: torch.Tensor,
                       optimizer: torch.optim.Optimizer, args: argparse.Namespace, epoch: int, num_classes: int,
                       rng: np.random.Generator, device: torch.device, desc: str,
                       scaler: torch.amp.GradScaler | None = None,
                       max_batches: int | None = None) -> dict[str, float]:
    """One DivideMix epoch of ``model`` on the split of ``peer``.

    ``labelled`` and ``unlabelled`` yield ``(view1, view2, label, index)``; ``w`` (N,) holds the peer's clean
    probability of every training sample, on ``device``. The unlabelled loader is restarted whenever it runs out;
    without unlabelled samples only the labelled loss and the prior penalty are used. ``model`` may be a DDP
    wrapper: only the training forward goes through it, the label refinement and guessing use the module inside
    (and ``peer`` should be a plain module). Losses are averaged over all processes' batches. Forward passes run
    under ``args.amp`` autocast (losses in float32) and the step goes through ``scaler`` (:mod:`fine.amp`).
    """
    model.train()
    amp = getattr(args, "amp", "off")
    scaler = scaler or torch.amp.GradScaler(device.type, enabled=False)
    plain = local_module(model)
    peer.eval()
    num_iter = len(labelled) if max_batches is None else min(len(labelled), max_batches)
    unlabelled_iter = iter(unlabelled) if unlabelled is not None else None
    totals = torch.zeros(5, dtype=torch.float64, device=device)  # loss, Lx, Lu, penalty sums; batches
    ramp = 0.0

    def forward(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """float32 logits of ``net`` on ``x``, the forward pass under ``amp`` autocast."""
        with autocast(device, amp):
            return net(x).float()

    batches = tqdm(islice(labelled, num_iter), desc=desc, total=num_iter, leave=False, dynamic_ncols=True, disable=None)
    for step, (x1, x2, y, index) in enumerate(batches):
        x1, x2 = x1.to(device, non_blocking=True), x2.to(device, non_blocking=True)
        y, index = y.to(device, non_blocking=True), index.to(device)
        batch = len(y)
        with torch.no_grad():
            p_x = forward(plain, torch.cat([x1, x2])).softmax(1).reshape(2, batch, num_classes).mean(0)
            targets_x = co_refine(F.one_hot(y, num_classes), w[index], p_x, args.T)
            inputs, targets = [x1, x2], [targets_x, targets_x]  # + [u1 and u2 together], [guesses twice]
            if unlabelled_iter is not None:
                try:
                    u1, u2, _, _ = next(unlabelled_iter)
                except StopIteration:
                    unlabelled_iter = iter(unlabelled)
                    u1, u2, _, _ = next(unlabelled_iter)
                u = torch.cat([u1, u2]).to(device, non_blocking=True)
                # Four predictions per sample: both networks on both views.
                guesses = [forward(m, u).softmax(1).reshape(2, len(u1), num_classes) for m in (plain, peer)]
                targets_u = co_guess([g[v] for g in guesses for v in range(2)], args.T)
                inputs.append(u)
                targets += [targets_u, targets_u]
        mixed_x, mixed_y, _ = mixup(torch.cat(inputs), torch.cat(targets), args.alpha, rng)
        logits = forward(model, mixed_x)
        loss_x = soft_cross_entropy(logits[:2 * batch], mixed_y[:2 * batch])
        loss_u = unlabelled_mse(logits[2 * batch:], mixed_y[2 * batch:]) if len(inputs) == 3 else logits.new_zeros(())
        ramp = args.lambda_u * linear_rampup(epoch + step / num_iter, args.warmup)
        penalty = uniform_prior_penalty(logits)
        loss = loss_x + ramp * loss_u + penalty
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        totals += torch.stack([loss.detach(), loss_x.detach(), loss_u.detach(), penalty.detach(),
                               torch.ones((), device=device)]).double()
    loss_sum, lx_sum, lu_sum, penalty_sum, n = all_reduce_sum(totals).tolist()
    n = max(n, 1.0)
    return {"loss": loss_sum / n, "loss_x": lx_sum / n, "loss_u": lu_sum / n, "penalty": penalty_sum / n,
            "lambda_u": ramp, "batches": n}


def divide(args: argparse.Namespace, model: nn.Module, eval_batches: Iterable, labels: torch.Tensor,
           num_classes: int, history: list[torch.Tensor], device: torch.device, pool: torch.Tensor,
           local: torch.Tensor | None = None) -> tuple[Selection, list[torch.Tensor]]:
    """Split the samples ``pool`` with the eval-mode outputs of ``model`` (a network, not its DDP wrapper) on
    un-augmented images.

    ``pool`` (n,) distinct dataset indices (all N samples, or the epoch's draw with ``--num_batches``); ``labels``
    (N,) the noisy labels of the whole training set. ``eval_batches`` covers the samples ``pool[local]``: this
    process's share under torchrun, each sample of the pool in exactly one process's share (``local`` = None: the
    whole pool, a plain run). FINE then all-reduces the per-class grams (:func:`fine_select_distributed`) and
    loss-gmm gathers the logits by position; every process gets the same split.

    Returns the selection over the pool (row ``j`` = sample ``pool[j]``; ``clean_prob`` = w, ``clean_mask`` = w >
    p_threshold) and the updated history of normalised per-sample losses (loss-gmm: the GMM sees the mean of this
    epoch's and the ``--loss_history`` - 1 previous epochs' losses, so that many are kept).
    """
    n = len(pool)
    features, logits = extract_features(unwrap_model(model), eval_batches, len(labels), device, amp=args.amp,
                                        subset=pool)
    labels = labels[pool]
    if args.selector == "fine":
        if local is None:
            return fine_select(features, labels, num_classes, ref_mask=None, threshold=args.p_threshold), history
        return fine_select_distributed(features[local], labels[local], local, n, num_classes,
                                       threshold=args.p_threshold), history
    if local is not None:
        logits = gather_by_index(logits[local], local, n)
    losses = F.cross_entropy(logits, labels, reduction="none")
    sel = loss_gmm_select(losses, threshold=args.p_threshold, history=torch.stack(history) if history else None)
    keep = args.loss_history - 1
    return sel, (history + [sel.scores])[-keep:] if keep else []


def selection_row(sel: Selection, is_clean: torch.Tensor | None) -> dict[str, float]:
    """Size and, when clean labels are known, precision/recall/F1/specificity/accuracy and the AUC of w."""
    row = {"selected": int(sel.clean_mask.sum())}
    if is_clean is not None:
        metrics = selection_metrics(sel.clean_mask, is_clean)
        row.update({k: metrics[k] for k in ("precision", "recall", "f1", "specificity", "accuracy")})
        both = 0 < int(is_clean.sum()) < len(is_clean)
        row["auc"] = float(roc_auc_score(is_clean.numpy(), sel.clean_prob.float().numpy())) if both else None
    return row


def main(args: argparse.Namespace) -> dict:
    args = resolve_args(args)
    world = init_distributed(args.device)
    device = world.device
    if args.workers is None:
        args.workers = 4 if device.type == "cuda" else 0
    if args.data_on_gpu == "auto":
        args.data_on_gpu = "on" if device.type == "cuda" and args.dataset in AUGMENTATION else "off"
    if args.data_on_gpu == "on" and args.dataset not in AUGMENTATION:
        raise UserError(f"--data_on_gpu on needs an in-memory dataset ({', '.join(AUGMENTATION)}); "
                        f"{args.dataset} is read from files: use --data_on_gpu off")
    data = load_data(args)
    bundle, noisy, is_clean = data.bundle, data.noisy, data.is_clean
    train_set, num_classes = bundle.train, bundle.num_classes
    num_train = len(train_set)

    run_dir, resuming = on_main(lambda: prepare_run_dir(args, "dividemix", ["method", "loss", "selector"]))
    if (run_dir / "summary.json").exists():
        print0(f"{run_dir} already finished; nothing to do")
        return {}
    if world.is_main:
        print_args(args)
    print0(f"run directory: {run_dir}\ntrain {num_train}, test {len(bundle.test)}; {bundle.noise_info}; "
           f"{world.world_size} process(es)")

    seed_everything(args.seed)
    configure_backends(device)
    in_channels = bundle.test[0][0].shape[0]
    models = [prepare_model(create_model(args.arch, num_classes, pretrained=args.pretrained,
                                         in_channels=in_channels).to(device),
                            channels_last=args.channels_last, compile=args.compile) for _ in range(2)]
    train_models = [wrap_ddp(m, world, sync_bn=args.sync_bn) for m in models]  # what the optimisers step through
    scalers = [grad_scaler(device, args.amp) for _ in range(2)]
    optimizers = [build_optimizer(m, args) for m in models]
    schedulers = [build_scheduler(opt, args) for opt in optimizers]
    loader_kw = dict(num_workers=args.workers, pin_memory=device.type == "cuda")
    eval_set = train_set.view(bundle.test_transform)
    # evaluation: each process predicts its share of the samples and the predictions are gathered
    test_loader = evaluation_loader(bundle.test, batch_size=4 * args.batch_size, **loader_kw)
    extra_loaders = {name: evaluation_loader(ds, batch_size=4 * args.batch_size, **loader_kw)
                     for name, ds in bundle.extra_tests.items()}
    two_views = TwoViews(train_set)
    fast = warm_fast = eval_fast = None  # --data_on_gpu on: the training set on the device, in three batch sizes
    if args.data_on_gpu == "on":
        if not isinstance(train_set, NoisyDataset):
            raise UserError(f"--data_on_gpu on needs an in-memory dataset; {args.dataset} is read from files: "
                            f"use --data_on_gpu off")
        fast = TensorLoader(train_set, args.dataset, batch_size=args.batch_size, device=device,
                            channels_last=args.channels_last)
        warm_fast, eval_fast = copy.copy(fast), copy.copy(fast)  # share the device-resident images
        warm_fast.batch_size, eval_fast.batch_size = 2 * args.batch_size, 4 * args.batch_size
    # --num_batches counts the batches of all processes together
    max_batches = None if args.num_batches is None else math.ceil(args.num_batches / world.world_size)
    pool = torch.arange(num_train)  # the samples of an epoch: all, or a fresh class-balanced draw (--num_batches)

    # history[i]: recent normalised losses of network i (loss-gmm); selection: quality of network 1's last split.
    state = {"epoch": -1, "history": [[], []], "best_test": -math.inf, "best_epoch": -1, "last_test": None,
             "selection": None, "elapsed": 0.0}
    if resuming:
        state = restore(run_dir / "last.pt", models, optimizers, schedulers, scalers=scalers)
    logger = RunLogger(run_dir, resume_epoch=state["epoch"] + 1) if world.is_main else None
    start = time.time() - state["elapsed"]

    def batches_of(indices: torch.Tensor, generator: torch.Generator, augment: torch.Generator, *,
                   warmup: bool) -> DataLoader | DeviceBatches:
        """Re-iterable training batches of this process's share of ``indices``, reshuffled on every pass:
        ``(x, y, index)`` at warm-up (twice the batch size), else ``(view1, view2, y, index)``."""
        sampler = ShardedRandomSampler(indices, generator, world_size=world.world_size, rank=world.rank)
        if fast is not None:
            return DeviceBatches(warm_fast if warmup else fast, sampler, augment, two_views=not warmup)
        if warmup:
            return DataLoader(train_set, batch_size=2 * args.batch_size, sampler=sampler, **loader_kw)
        return DataLoader(two_views, batch_size=args.batch_size, sampler=sampler, **loader_kw)

    for epoch in range(state["epoch"] + 1, args.epochs):
        row: dict = {"epoch": epoch, "lr": optimizers[0].param_groups[0]["lr"]}
        generator = epoch_generator(args.seed, epoch, world.rank)  # sample order, shared by the processes
        augment = augment_generator(args.seed, epoch, world.rank)
        rng = np.random.default_rng((args.seed % 2**32, epoch, world.rank))  # mixup weights and partners
        if args.num_batches is not None:  # distinct samples, so a class short of its share gives fewer
            pool = balanced_subset(noisy, args.num_batches * 2 * args.batch_size, num_classes, generator)
        pool_is_clean = is_clean[pool] if is_clean is not None else None
        if epoch < args.warmup:
            # DivideMix warms up on batches of twice the MixMatch size (64 labelled + 64 unlabelled).
            loader = batches_of(pool, generator, augment, warmup=True)
            for i in range(2):
                metrics = warmup_one_epoch(train_models[i], loader, optimizers[i],
                                           confidence_penalty=args.noise_kind == "asym", max_batches=max_batches,
                                           device=device, desc=f"warm-up {epoch} net {i + 1}", amp=args.amp,
                                           scaler=scalers[i])
                row.update({f"train/net{i + 1}/{k}": v for k, v in metrics.items()})
        else:
            # Each process extracts the outputs of its share of the pool (each sample exactly once).
            local = shard_indices(torch.arange(len(pool)), world_size=world.world_size, rank=world.rank,
                                  shuffle=False, pad=False)
            splits = []
            for i in range(2):
                t0 = time.time()
                if eval_fast is None:
                    batches = DataLoader(eval_set, batch_size=4 * args.batch_size, sampler=pool[local].tolist(),
                                         **loader_kw)
                else:
                    batches = eval_fast.epoch(pool[local], shuffle=False, augment=False)
                sel, state["history"][i] = divide(args, models[i], batches, noisy, num_classes, state["history"][i],
                                                  device, pool, local if world.world_size > 1 else None)
                splits.append(sel)
                tag = f"select/net{i + 1}"
                row[f"{tag}/seconds"] = time.time() - t0
                sel_metrics = selection_row(sel, pool_is_clean)
                row.update({f"{tag}/{k}": v for k, v in sel_metrics.items()})
                if pool_is_clean is not None:
                    if logger is not None:
                        logger.histogram(f"{tag}/prob_clean", sel.clean_prob[pool_is_clean], epoch)
                        logger.histogram(f"{tag}/prob_noisy", sel.clean_prob[~pool_is_clean], epoch)
                    if i == 0:
                        state["selection"] = {k: sel_metrics[k] for k in
                                              ("precision", "recall", "f1", "specificity", "accuracy", "selected")}
                if world.is_main:
                    clean_labels = train_set.clean_labels
                    save_selection_round(run_dir / "selection" / f"round_{epoch:03d}_net{i + 1}.npz", sel,
                                         np.asarray(train_set.noisy_labels)[pool.numpy()],
                                         None if clean_labels is None else np.asarray(clean_labels)[pool.numpy()],
                                         samples=None if args.num_batches is None else pool)
            for i in range(2):
                peer = 1 - i
                sel = splits[peer]  # co-divide: network i learns from its peer's split
                labelled_idx, unlabelled_idx = pool[sel.clean_mask.cpu()], pool[~sel.clean_mask.cpu()]
                tag = f"train/net{i + 1}"
                row[f"{tag}/labelled"], row[f"{tag}/unlabelled"] = len(labelled_idx), len(unlabelled_idx)
                if len(labelled_idx) == 0:
                    print0(f"epoch {epoch}: network {peer + 1} labelled no sample clean; network {i + 1} skips "
                           f"this epoch")
                    continue
                labelled = batches_of(labelled_idx, generator, augment, warmup=False)
                unlabelled = (batches_of(unlabelled_idx, generator, augment, warmup=False)
                              if len(unlabelled_idx) > 0 else None)
                w = sel.clean_prob.new_zeros(num_train, device=device)  # the peer's clean probability by index
                w[pool.to(device)] = sel.clean_prob.to(device)
                metrics = mixmatch_one_epoch(train_models[i], models[peer], labelled, unlabelled,
                                             w, optimizers[i], args, epoch, num_classes, rng,
                                             device, desc=f"epoch {epoch} net {i + 1}", scaler=scalers[i],
                                             max_batches=max_batches)
                row.update({f"{tag}/{k}": v for k, v in metrics.items()})
        losses = [row[f"train/net{i + 1}/loss"] for i in range(2) if f"train/net{i + 1}/loss" in row]
        row["train/loss"] = sum(losses) / len(losses) if losses else None
        if row["train/loss"] is not None and not math.isfinite(row["train/loss"]):
            raise UserError(f"training diverged at epoch {epoch} (loss {row['train/loss']}); the last good "
                            f"checkpoint is {run_dir / 'last.pt'}; lower --lr and start again")
        for sched in schedulers:
            sched.step()

        probs = []
        for i in range(2):
            p, labels = predict([models[i]], test_loader, device, amp=args.amp)
            probs.append(p)
            row[f"test/acc_net{i + 1}"] = 100.0 * (p.argmax(1) == labels).float().mean().item()
        row["test/acc"] = 100.0 * ((probs[0] + probs[1]).argmax(1) == labels).float().mean().item()  # ensemble
        row["test/acc_top5"] = 100.0 * ((probs[0] + probs[1]).topk(min(5, num_classes), 1).indices
                                        == labels[:, None]).any(1).float().mean().item()
        row.update(evaluate_extra_tests(models, extra_loaders, device, amp=args.amp))
        row["val/acc"] = None
        improved = row["test/acc"] > state["best_test"]
        if improved:
            state.update(best_test=row["test/acc"], best_epoch=epoch)
        state.update(epoch=epoch, last_test=row["test/acc"], elapsed=time.time() - start)
        if world.is_main:
            logger.epoch_row(row)
            save_epoch(run_dir, checkpoint(args, state, models, optimizers, schedulers, scalers=scalers), improved)
        loss_text = f"loss {row['train/loss']:.4f}" if row["train/loss"] is not None else "no training"
        print0(f"epoch {epoch:3d} {loss_text} test {row['test/acc']:.2f} "
               f"(best {state['best_test']:.2f} @ {state['best_epoch']})")

    summary = on_main(lambda: summarize(logger, "dividemix", args, state, run_dir, time.time() - start, None))
    cleanup()
    return summary


if __name__ == "__main__":
    run_cli(lambda: main(get_args_parser().parse_args()))
