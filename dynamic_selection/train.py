"""Train under label noise with dynamic sample selection.

Methods (``--method``):
  standard      one network on all noisy labels
  fine          warm-up on all data, then every ``--every`` epochs select samples with ``--selector`` (FINE by default)
                from un-augmented eval-mode features and train only on the selection until the next round
  f-coteaching  two networks; each trains on the samples FINE selects from the *other* network's features
  coteaching    two networks exchange their small-loss samples in every mini-batch (Han et al. 2018)
  coteaching+   Co-teaching restricted to the samples on which the two networks disagree (Yu et al. 2019)
Every method takes ``--loss ce|gce|sce|elr``.

    python -m dynamic_selection.train --dataset cifar10 --noise_kind sym --noise_rate 0.5 --method fine
"""
from __future__ import annotations

import argparse
import math
import time
from collections.abc import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from data_loader import NoisyDataset
from data_loader.sampling import balanced_epoch_indices, balanced_subset
from data_loader.tensor_loader import TensorLoader
from data_loader.transforms import AUGMENTATION
from dynamic_selection.recipes import recipe
from fine.amp import autocast, configure_backends, grad_scaler, prepare_model, unwrap_model
from fine.args import add_common_args, add_speed_args, check_common_args, fill_defaults
from fine.errors import UserError, run_cli
from fine.features import extract_features
from fine.logger import RunLogger
from fine.losses import LOSSES, build_loss, default_loss_hparams
from fine.models import create_model
from fine.run import prepare_run_dir, print_args, seed_everything
from fine.distributed import (all_reduce_sum, cleanup, gather_by_index, init_distributed, on_main, print0,
                              shard_indices, wrap_ddp)
from fine.selection import (Selection, fine_select, fine_select_distributed, loss_gmm_select, selection_metrics,
                            small_loss_select)
from fine.training import (augment_generator, build_optimizer, build_scheduler, checkpoint, epoch_generator,
                           evaluate, evaluate_extra_tests, evaluation_loader, load_data, restore, save_epoch,
                           save_selection_round, summarize)

METHODS = ("standard", "fine", "f-coteaching", "coteaching", "coteaching+")
SELECTORS = ("fine", "small-loss", "loss-gmm")
TWO_NETS = ("f-coteaching", "coteaching", "coteaching+")
SELECTING = ("fine", "f-coteaching")  # methods with periodic selection rounds


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dynamic_selection.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    add_speed_args(parser)
    g = parser.add_argument_group("method")
    g.add_argument("--method", type=str, default="fine", choices=METHODS, help="training method (see above)")
    g.add_argument("--loss", type=str, default="ce", choices=LOSSES, help="training loss")
    g.add_argument("--optimizer", type=str, default=None, choices=("sgd", "adam"),
                   help="optimiser (default per recipe)")
    g.add_argument("--decay_start", type=int, default=None,
                   help="linear-decay schedule: epoch from which the lr falls linearly to 0 (Adam's beta1 drops to "
                        "0.1)")
    s = parser.add_argument_group("selection (fine, f-coteaching)")
    s.add_argument("--selector", type=str, default=None, choices=SELECTORS,
                   help="detector run at each selection round of --method fine (f-coteaching always uses fine)")
    s.add_argument("--warmup", type=int, default=None, help="epochs on all data before the first selection round")
    s.add_argument("--every", type=int, default=None, help="epochs between selection rounds")
    s.add_argument("--threshold", type=float, default=0.5,
                   help="zeta: a sample is clean when the mixture posterior of the clean component exceeds it")
    s.add_argument("--fit", type=str, default="gmm", choices=("gmm", "kmeans", "bmm"),
                   help="per-class 2-component model fitted on the FINE scores")
    s.add_argument("--score", type=str, default="abs", choices=("abs", "squared"),
                   help="FINE score: |<u, z/|z|>| as the published code, or the paper's <u, z>^2")
    s.add_argument("--vector", type=str, default="eigen", choices=("eigen", "mean"),
                   help="class direction: top eigenvector of the gram matrix, or the class mean")
    s.add_argument("--reference", type=str, default=None, choices=("previous", "class"),
                   help="samples whose features define each class's eigenvector: the previous round's selection "
                        "(whole class in round 1), or always the whole class (default per recipe: class on "
                        "clothing1m)")
    s.add_argument("--aug_features", action="store_true",
                   help="extract selection features from augmented images (the published code's behaviour; "
                        "off by default)")
    c = parser.add_argument_group("co-teaching family and small-loss selection")
    c.add_argument("--forget_rate", type=float, default=None,
                   help="tau: fraction of samples dropped as large-loss (default: the realised noise rate)")
    c.add_argument("--num_gradual", type=int, default=None, help="epochs over which the forget rate ramps up to tau")
    c.add_argument("--init_steps", type=int, default=None,
                   help="coteaching+: optimisation steps of plain co-teaching before disagreement is used")
    lg = parser.add_argument_group("robust-loss hyperparameters (default per dataset)")
    lg.add_argument("--gce_q", type=float, default=None, help="GCE exponent q")
    lg.add_argument("--sce_alpha", type=float, default=None, help="SCE weight of cross-entropy")
    lg.add_argument("--sce_beta", type=float, default=None, help="SCE weight of reverse cross-entropy")
    lg.add_argument("--elr_beta", type=float, default=None, help="ELR target momentum beta")
    lg.add_argument("--elr_lambda", type=float, default=None, help="ELR regularisation weight lambda")
    return parser


def resolve_args(args: argparse.Namespace) -> argparse.Namespace:
    """Check the flags against the method and fill unset ones from the paper's recipe."""
    check_common_args(args)
    selecting = args.method in SELECTING
    if not selecting:
        for flag in ("selector", "warmup", "every", "reference"):
            if getattr(args, flag) is not None:
                raise UserError(f"--{flag} applies to --method fine or f-coteaching, not {args.method}")
    if args.method == "f-coteaching" and args.selector not in (None, "fine"):
        raise UserError("--method f-coteaching always selects with FINE; drop --selector or use --method fine")
    if args.selector is None and selecting:
        args.selector = "fine"
    uses_forget_rate = args.method in ("coteaching", "coteaching+") or args.selector == "small-loss"
    if not uses_forget_rate and args.forget_rate is not None:
        raise UserError("--forget_rate applies to coteaching, coteaching+ or --selector small-loss")
    if args.method != "coteaching+" and args.init_steps is not None:
        raise UserError("--init_steps applies to --method coteaching+ only")
    fill_defaults(args, recipe(args.dataset, args.method, args.loss))
    fill_defaults(args, {f"{args.loss}_{k}": v for k, v in default_loss_hparams(args.loss, args.dataset).items()})
    if selecting and (args.every < 1 or args.warmup < 0):
        raise UserError(f"--every must be at least 1 and --warmup at least 0 (got {args.every}, {args.warmup})")
    if selecting and args.warmup >= args.epochs:
        raise UserError(f"--warmup {args.warmup} leaves no epoch for selection within --epochs {args.epochs}")
    if not 0.0 < args.threshold < 1.0:
        raise UserError(f"--threshold {args.threshold} is outside (0, 1)")
    if args.forget_rate is not None and not 0.0 <= args.forget_rate < 1.0:
        raise UserError(f"--forget_rate {args.forget_rate} is outside [0, 1)")
    return args


def loss_hparams(args: argparse.Namespace) -> dict:
    """The ``--<loss>_<name>`` flags of the chosen loss, as keyword arguments of ``build_loss``."""
    prefix = f"{args.loss}_"
    return {k[len(prefix):]: v for k, v in vars(args).items() if k.startswith(prefix)}


def forget_rate_at(args: argparse.Namespace, epoch: int) -> float:
    """Co-teaching's forget-rate schedule: linear from 0 to tau over ``num_gradual`` epochs, then tau."""
    return args.forget_rate * min(epoch / max(args.num_gradual, 1), 1.0)


def train_one_epoch(model: nn.Module, loader: Iterable, optimizer: torch.optim.Optimizer, loss_fn: nn.Module,
                    clean_labels: torch.Tensor | None, device: torch.device, desc: str, *, amp: str = "off",
                    scaler: torch.amp.GradScaler | None = None, total: int | None = None) -> dict[str, float]:
    """One epoch of ``loss_fn`` on the batches ``(x, y, index)`` of ``loader`` (a DataLoader or a TensorLoader epoch).

    Returns the mean loss and the training accuracy (%) against the noisy and, when known, the clean labels.
    Sums stay on ``device`` until the end of the epoch, so there is no host synchronisation per step. ``amp`` and
    ``scaler`` select mixed precision (:mod:`fine.amp`).
    """
    model.train()
    scaler = scaler or torch.amp.GradScaler(device.type, enabled=False)
    totals = torch.zeros(4, dtype=torch.float64, device=device)  # loss sum, hits vs noisy, hits vs clean, samples
    for x, y, index in tqdm(loader, desc=desc, total=total, leave=False, dynamic_ncols=True, disable=None):
        x, y, index = x.to(device, non_blocking=True), y.to(device, non_blocking=True), index.to(device)
        with autocast(device, amp):
            logits = model(x)
        loss = loss_fn(logits.float(), y, index)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        pred = logits.detach().argmax(1)
        clean_hits = (pred == clean_labels[index]).sum() if clean_labels is not None else 0
        totals += torch.cat([(loss.detach() * len(y)).reshape(1), (pred == y).sum().reshape(1),
                             torch.as_tensor(clean_hits, device=device).reshape(1),
                             torch.tensor([len(y)], device=device)]).double()
    loss_sum, hits, clean_hits, n = all_reduce_sum(totals).tolist()
    n = max(n, 1.0)
    return {"loss": loss_sum / n, "acc_noisy": 100 * hits / n,
            "acc_clean": 100 * clean_hits / n if clean_labels is not None else None}


def train_one_epoch_coteaching(models: list[nn.Module], loader: DataLoader, optimizers: list[torch.optim.Optimizer],
                               loss_fns: list[nn.Module], forget_rate: float, *, disagree: bool, step: int,
                               init_steps: int, is_clean: torch.Tensor | None, device: torch.device,
                               desc: str, amp: str = "off",
                               scalers: list[torch.amp.GradScaler] | None = None) -> tuple[dict[str, float], int]:
    """Co-teaching(+) epoch: each network updates on the small-loss samples picked by its peer.

    With ``disagree`` (Co-teaching+), after ``init_steps`` optimisation steps only the samples on which the two
    networks' predictions differ are candidates. Returns the epoch's metrics and the updated step count.
    """
    for m in models:
        m.train()
    scalers = scalers or [torch.amp.GradScaler(device.type, enabled=False) for _ in models]
    totals = torch.zeros(5, dtype=torch.float64)  # loss sum, correct (net 1), samples, kept, kept-and-clean
    for x, y, index in tqdm(loader, desc=desc, leave=False, dynamic_ncols=True, disable=None):
        x, y, index = x.to(device, non_blocking=True), y.to(device, non_blocking=True), index.to(device)
        with autocast(device, amp):
            logits = [m(x).float() for m in models]
        candidates = torch.arange(len(y), device=device)
        if disagree and step >= init_steps:
            candidates = (logits[0].argmax(1) != logits[1].argmax(1)).nonzero().squeeze(1)
        step += 1
        if len(candidates) == 0:
            continue
        num_keep = max(1, round((1.0 - forget_rate) * len(candidates)))
        keep = []
        for net_logits in logits:  # each network ranks the candidates by its own cross-entropy
            ce = F.cross_entropy(net_logits[candidates].detach(), y[candidates], reduction="none")
            keep.append(candidates[ce.argsort()[:num_keep]])
        losses = []
        for net, peer in ((0, 1), (1, 0)):
            chosen = keep[peer]
            losses.append(loss_fns[net](logits[net][chosen], y[chosen], index[chosen]))
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        sum(sc.scale(loss) for sc, loss in zip(scalers, losses)).backward()
        for sc, opt in zip(scalers, optimizers):
            sc.step(opt)
            sc.update()
        clean_kept = is_clean[index[keep[1]]].sum() if is_clean is not None else 0
        totals += torch.cat([(losses[0].detach() * len(y)).reshape(1), (logits[0].argmax(1) == y).sum().reshape(1),
                             torch.tensor([len(y), num_keep], device=device),
                             torch.as_tensor(clean_kept, device=device).reshape(1)]).double()
    loss_sum, hits, n, kept, clean_kept = all_reduce_sum(totals).tolist()
    n = max(n, 1.0)
    metrics = {"loss": loss_sum / n, "acc_noisy": 100 * hits / n, "kept_fraction": kept / n,
               "kept_precision": clean_kept / max(kept, 1.0) if is_clean is not None else None}
    return metrics, step


def epoch_samples(args: argparse.Namespace, labels: torch.Tensor, candidates: torch.Tensor | None, num_classes: int,
                  generator: torch.Generator) -> list[int]:
    """The training samples of one epoch, in order: a shuffle of the selected ``candidates``, or without a selection
    (None) a shuffle of all samples, with ``--num_batches`` a class-balanced draw of ``num_batches * batch_size`` of
    them (the Clothing1M recipe, whose selection rounds also score such a draw: :func:`selection_pool`)."""
    if candidates is None and args.num_batches is not None:
        return balanced_epoch_indices(labels, None, args.num_batches * args.batch_size, num_classes,
                                      generator).tolist()
    candidates = torch.arange(len(labels)) if candidates is None else candidates
    return candidates[torch.randperm(len(candidates), generator=generator)].tolist()


def selection_pool(args: argparse.Namespace, labels: torch.Tensor, num_classes: int,
                   generator: torch.Generator) -> torch.Tensor:
    """(n,) sorted distinct dataset indices a selection round scores: every sample, or with ``--num_batches`` a
    fresh class-balanced draw of ``num_batches * batch_size`` of them (fewer where a class is short of its share).

    As in the published Clothing1M code, whose training set is such a draw, a round then costs about one epoch's
    forward passes rather than a pass over the million images, and training until the next round uses the samples
    selected in the draw.
    """
    if args.num_batches is None:
        return torch.arange(len(labels))
    return balanced_subset(labels, args.num_batches * args.batch_size, num_classes, generator)


def select(args: argparse.Namespace, features: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor,
           num_classes: int, ref_mask: torch.Tensor | None) -> Selection:
    """One selection round with the configured detector on eval-mode outputs (n, ...) of the round's samples."""
    if args.selector == "fine":
        return fine_select(features, labels, num_classes, ref_mask=ref_mask, fit=args.fit, threshold=args.threshold,
                           score=args.score, vector=args.vector)
    losses = F.cross_entropy(logits, labels, reduction="none")
    if args.selector == "small-loss":
        return small_loss_select(losses, labels, 1.0 - args.forget_rate, per_class=True, num_classes=num_classes)
    return loss_gmm_select(losses, threshold=args.threshold)


def select_sharded(args: argparse.Namespace, features: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor,
                   num_classes: int, ref_mask: torch.Tensor | None, shard: torch.Tensor) -> Selection:
    """:func:`select` under torchrun: this process holds the rows ``shard`` of ``features``/``logits`` (n, ...).

    FINE all-reduces the per-class grams and fits the mixtures on the gathered scores; the loss-based selectors
    gather the logits by row. Every process gets the same selection of all n rows.
    """
    if args.selector == "fine":
        return fine_select_distributed(features[shard], labels[shard], shard, len(labels), num_classes,
                                       ref_mask_local=None if ref_mask is None else ref_mask[shard], fit=args.fit,
                                       threshold=args.threshold, score=args.score, vector=args.vector)
    return select(args, features, gather_by_index(logits[shard], shard, len(labels)), labels, num_classes, ref_mask)


def main(args: argparse.Namespace) -> dict:
    args = resolve_args(args)
    world = init_distributed(args.device)
    device = world.device
    if args.workers is None:
        args.workers = 4 if device.type == "cuda" else 0
    if args.data_on_gpu == "auto":
        args.data_on_gpu = "on" if device.type == "cuda" and args.dataset in AUGMENTATION else "off"
    data = load_data(args)
    bundle, noisy, clean, is_clean = data.bundle, data.noisy, data.clean, data.is_clean
    train_set, num_classes = bundle.train, bundle.num_classes
    num_train = len(train_set)
    clean_dev = clean.to(device) if clean is not None else None
    is_clean_dev = is_clean.to(device) if is_clean is not None else None
    if args.forget_rate is None and (args.method in ("coteaching", "coteaching+") or args.selector == "small-loss"):
        if is_clean is None:
            raise UserError("this dataset has no clean labels to estimate the noise rate; pass --forget_rate")
        args.forget_rate = round(1.0 - is_clean.float().mean().item(), 4)

    run_dir, resuming = on_main(lambda: prepare_run_dir(args, "dynamic_selection", ["method", "loss", "selector"]))
    if (run_dir / "summary.json").exists():
        print0(f"{run_dir} already finished; nothing to do")
        return {}
    if world.is_main:
        print_args(args)
    print0(f"run directory: {run_dir}\ntrain {num_train}, validation {len(bundle.val) if bundle.val else 0}, "
           f"test {len(bundle.test)}; {bundle.noise_info}; {world.world_size} process(es)")

    seed_everything(args.seed)
    num_nets = 2 if args.method in TWO_NETS else 1
    configure_backends(device)
    in_channels = bundle.test[0][0].shape[0]
    models = [prepare_model(create_model(args.arch, num_classes, pretrained=args.pretrained,
                                         in_channels=in_channels).to(device),
                            channels_last=args.channels_last, compile=args.compile) for _ in range(num_nets)]
    train_models = [wrap_ddp(m, world, sync_bn=args.sync_bn) for m in models]  # what the optimisers step through
    scalers = [grad_scaler(device, args.amp) for _ in range(num_nets)]
    optimizers = [build_optimizer(m, args) for m in models]
    schedulers = [build_scheduler(opt, args) for opt in optimizers]
    loss_fns = [build_loss(args.loss, num_classes=num_classes, num_samples=num_train, **loss_hparams(args)).to(device)
                for _ in range(num_nets)]
    loader_kw = dict(batch_size=args.batch_size, num_workers=args.workers, pin_memory=device.type == "cuda")
    if args.data_on_gpu == "on" and not (isinstance(train_set, NoisyDataset) and args.dataset in AUGMENTATION):
        raise UserError(f"--data_on_gpu on needs an in-memory dataset ({', '.join(AUGMENTATION)}); "
                        f"{args.dataset} is read from files: use --data_on_gpu off")
    fast = TensorLoader(train_set, args.dataset, batch_size=args.batch_size, device=device,
                        channels_last=args.channels_last) if args.data_on_gpu == "on" else None
    # Selection features and evaluation: each process takes its share of the samples (each sample exactly once) and
    # the outputs are combined.
    eval_kw = dict(batch_size=4 * args.batch_size, num_workers=args.workers, pin_memory=device.type == "cuda")
    eval_set = train_set if args.aug_features else train_set.view(bundle.test_transform)
    val_loader = evaluation_loader(bundle.val, **eval_kw) if bundle.val is not None else None
    test_loader = evaluation_loader(bundle.test, **eval_kw)
    extra_loaders = {name: evaluation_loader(ds, **eval_kw) for name, ds in bundle.extra_tests.items()}

    # train_masks[i]: samples network i trains on; ref_masks[i]: last selection made from network i's features.
    state = {"epoch": -1, "train_masks": [None] * num_nets, "ref_masks": [None] * num_nets, "step": 0,
             "best_val": -math.inf, "best_test": None, "best_epoch": -1, "last_test": None, "selection": None,
             "elapsed": 0.0}
    if resuming:
        state = restore(run_dir / "last.pt", models, optimizers, schedulers, loss_fns, scalers)
    logger = RunLogger(run_dir, resume_epoch=state["epoch"] + 1) if world.is_main else None
    start = time.time() - state["elapsed"]

    def batches_of(indices: list[int], augment: torch.Generator) -> Iterable:
        """This process's training batches of these samples in this order (its shard under torchrun), on the device
        (fast path, augmented from ``augment``) or from a DataLoader."""
        local = shard_indices(torch.tensor(indices), world_size=world.world_size, rank=world.rank, shuffle=False,
                              pad=True)
        if fast is not None:
            return fast.epoch(local, shuffle=False, augment=True, generator=augment)
        return DataLoader(train_set, sampler=local.tolist(), **loader_kw)

    for epoch in range(state["epoch"] + 1, args.epochs):
        row: dict = {"epoch": epoch, "lr": optimizers[0].param_groups[0]["lr"]}
        generator = epoch_generator(args.seed, epoch, world.rank)  # sample order, shared by the processes
        augment = augment_generator(args.seed, epoch, world.rank)  # this process's augmentations (fast path)
        if args.method in SELECTING and epoch >= args.warmup and (epoch - args.warmup) % args.every == 0:
            pool = selection_pool(args, noisy, num_classes, generator)  # the samples this round scores
            # each process extracts the outputs of its share of the pool (each sample exactly once)
            local = shard_indices(torch.arange(len(pool)), world_size=world.world_size, rank=world.rank,
                                  shuffle=False, pad=False)
            pool_labels = noisy[pool]
            pool_is_clean = is_clean[pool] if is_clean is not None else None
            for i in range(num_nets):
                t0 = time.time()
                if fast is not None:
                    batches = fast.epoch(pool[local], shuffle=False, augment=args.aug_features, generator=augment)
                else:
                    batches = DataLoader(eval_set, sampler=pool[local].tolist(), **eval_kw)
                features, logits = extract_features(unwrap_model(models[i]), batches, num_train, device, amp=args.amp,
                                                    subset=pool)
                previous = state["ref_masks"][i] if args.reference == "previous" else None
                ref_mask = previous[pool] if previous is not None else None  # the pool's previously selected
                if world.world_size == 1:
                    sel = select(args, features, logits, pool_labels, num_classes, ref_mask)
                else:
                    sel = select_sharded(args, features, logits, pool_labels, num_classes, ref_mask, local)
                if not sel.clean_mask.any():
                    print0(f"epoch {epoch}: selection from network {i + 1} is empty; keeping the previous one")
                    continue
                selected = torch.zeros(num_train, dtype=torch.bool)  # by dataset index
                selected[pool] = sel.clean_mask.cpu()
                state["ref_masks"][i] = selected
                state["train_masks"][(i + 1) % num_nets] = selected  # f-coteaching: the peer trains on it
                tag = f"select/net{i + 1}" if num_nets > 1 else "select"
                row[f"{tag}/seconds"] = time.time() - t0
                row[f"{tag}/selected"] = int(sel.clean_mask.sum())
                if pool_is_clean is not None:
                    metrics = selection_metrics(sel.clean_mask, pool_is_clean)
                    row.update({f"{tag}/{k}": metrics[k] for k in ("precision", "recall", "f1", "specificity")})
                    if i == 0:  # summary: quality of the selection made from network 1's features
                        state["selection"] = {k: metrics[k] for k in
                                              ("precision", "recall", "f1", "specificity", "accuracy", "selected")}
                    if logger is not None:
                        logger.histogram(f"{tag}/score_clean", sel.scores[pool_is_clean], epoch)
                        logger.histogram(f"{tag}/score_noisy", sel.scores[~pool_is_clean], epoch)
                if world.is_main:
                    suffix = f"_net{i + 1}" if num_nets > 1 else ""
                    clean_labels = train_set.clean_labels
                    save_selection_round(run_dir / "selection" / f"round_{epoch:03d}{suffix}.npz", sel,
                                         np.asarray(train_set.noisy_labels)[pool.numpy()],
                                         None if clean_labels is None else np.asarray(clean_labels)[pool.numpy()],
                                         samples=None if args.num_batches is None else pool)

        if args.method in ("coteaching", "coteaching+"):
            indices = epoch_samples(args, noisy, None, num_classes, generator)
            metrics, state["step"] = train_one_epoch_coteaching(
                train_models, batches_of(indices, augment), optimizers, loss_fns, forget_rate_at(args, epoch),
                disagree=args.method == "coteaching+", step=state["step"], init_steps=args.init_steps,
                is_clean=is_clean_dev, device=device, desc=f"epoch {epoch}", amp=args.amp, scalers=scalers)
            row.update({f"train/{k}": v for k, v in metrics.items()})
        else:
            for i in range(num_nets):
                mask = state["train_masks"][i]
                indices = epoch_samples(args, noisy, None if mask is None else mask.nonzero().squeeze(1),
                                        num_classes, generator)
                metrics = train_one_epoch(train_models[i], batches_of(indices, augment), optimizers[i], loss_fns[i],
                                          clean_dev, device,
                                          desc=f"epoch {epoch}" + (f" net {i + 1}" if num_nets > 1 else ""),
                                          amp=args.amp, scaler=scalers[i],
                                          total=-(-len(indices) // (args.batch_size * world.world_size)))
                tag = f"train/net{i + 1}" if i else "train"
                row.update({f"{tag}/{k}": v for k, v in metrics.items()})
                row[f"{tag}/samples"] = len(indices)
        for loss_fn in loss_fns:  # each process updated its shard's ELR memory rows; rank 0 checkpoints all of them
            loss_fn.synchronize()
        if not math.isfinite(row["train/loss"]):
            raise UserError(f"training diverged at epoch {epoch} (loss {row['train/loss']}); the last good "
                            f"checkpoint is {run_dir / 'last.pt'}; lower --lr and start again")
        for sched in schedulers:
            sched.step()

        row["test/acc"], row["test/acc_top5"] = evaluate(models[0], test_loader, device, topk=(1, 5), amp=args.amp)
        row.update(evaluate_extra_tests(models[0], extra_loaders, device, amp=args.amp))
        if num_nets > 1:
            row["test/acc_net2"] = evaluate(models[1], test_loader, device, amp=args.amp)
        row["val/acc"] = evaluate(models[0], val_loader, device, amp=args.amp) if val_loader is not None else None
        # The best epoch is chosen on the (noisy) validation split when there is one, else on test accuracy.
        criterion = row["val/acc"] if row["val/acc"] is not None else row["test/acc"]
        improved = criterion > state["best_val"]
        if improved:
            state.update(best_val=criterion, best_test=row["test/acc"], best_epoch=epoch)
        state.update(epoch=epoch, last_test=row["test/acc"], elapsed=time.time() - start)
        if world.is_main:
            logger.epoch_row(row)
            save_epoch(run_dir, checkpoint(args, state, models, optimizers, schedulers, loss_fns, scalers), improved)
        val_text = f" val {row['val/acc']:.2f}" if row["val/acc"] is not None else ""
        print0(f"epoch {epoch:3d} loss {row['train/loss']:.4f}{val_text} test {row['test/acc']:.2f} "
              f"(best {state['best_test']:.2f} @ {state['best_epoch']})")

    best_val = state["best_val"] if val_loader is not None else None
    summary = on_main(lambda: summarize(logger, "dynamic_selection", args, state, run_dir, time.time() - start,
                                        best_val))
    cleanup()
    return summary


if __name__ == "__main__":
    run_cli(lambda: main(get_args_parser().parse_args()))
