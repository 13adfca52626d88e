"""Train DivideMix (Li, Socher and Hoi, ICLR 2020) or F-DivideMix under label noise.

Two networks warm up with cross-entropy on all data. Then, every epoch, each network's selector turns the training
set into a clean probability per sample; each network trains with MixMatch on the split made by its *peer*
(co-divide): samples whose clean probability exceeds ``--p_threshold`` are labelled (their labels co-refined), the
rest unlabelled (their labels co-guessed by both networks).
  --selector loss-gmm   DivideMix: 2-component GMM on the normalised per-sample cross-entropy
  --selector fine       F-DivideMix: FINE on eval-mode penultimate features of un-augmented images

    python -m dividemix.train --dataset cifar10 --noise_kind sym --noise_rate 0.5 --selector fine

With ``--num_batches`` (the Clothing1M recipe) each network works on fresh class-balanced draws of training samples,
as the published DivideMix code does (Train_clothing1M.py): it warms up on a draw of ``num_batches * 2 *
batch_size`` and splits a draw of ``num_batches * batch_size``, from which its peer then trains, so a round costs
about an epoch's forward passes, not a pass over the million images.

Under ``torchrun`` each process trains both networks on its share of every epoch's samples (DDP), extracts the
outputs of its share of the training set, and all processes make the same split from the combined outputs.
"""
from __future__ import annotations

import argparse
import math
import time
from collections.abc import Iterable
from itertools import islice

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from data_loader.sampling import balanced_subset
from dividemix.mixmatch import (co_guess, co_refine, linear_rampup, mixup, neg_entropy_penalty, soft_cross_entropy,
                                uniform_prior_penalty, unlabelled_mse)
from dividemix.recipes import recipe
from engine.args import (add_common_args, add_selector_args, add_speed_args, check_selector_flags, fill_defaults,
                         recipe_variant, resolve_selector_args, selector_config)
from engine.loop import Run, Trainer, fit
from fine.amp import autocast
from fine.distributed import all_reduce_sum, local_module, print0
from fine.errors import UserError, run_cli
from fine.selection import REGISTRY, Selection, select_samples

LABELS = {"loss-gmm": "DivideMix", "fine": "F-DivideMix"}


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dividemix.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    add_speed_args(parser)
    add_selector_args(parser, default="loss-gmm", title="the split (loss-gmm: DivideMix; fine: F-DivideMix)")
    g = parser.add_argument_group("DivideMix")
    g.add_argument("--warmup", type=int, default=None,
                   help="epochs of cross-entropy on all data before the first split (default per dataset)")
    g.add_argument("--lambda_u", type=float, default=None,
                   help="weight of the unlabelled loss after its 16-epoch ramp (default per dataset and noise)")
    g.add_argument("--temperature", "--T", dest="T", type=float, default=0.5,
                   help="sharpening temperature T of refined and guessed labels (--T as in DivideMix's code)")
    g.add_argument("--alpha", type=float, default=None,
                   help="mixup Beta(alpha, alpha) concentration (default 4; 0.5 on clothing1m and webvision)")
    g.add_argument("--unlabelled", type=str, default=None, choices=("mix", "ignore"),
                   help="mix: MixMatch mixes the labelled and the co-guessed unlabelled samples; ignore: only the "
                        "labelled ones (DivideMix on Clothing1M and WebVision, whose lambda_u is 0); default per "
                        "recipe")
    g.add_argument("--warmup_penalty", type=str, default=None, choices=("on", "off"),
                   help="add the confidence penalty (negative entropy) to the warm-up loss (default per recipe: on "
                        "for asymmetric noise and Clothing1M, as DivideMix)")
    return parser


def resolve_args(args: argparse.Namespace) -> argparse.Namespace:
    """Check the flags and fill unset ones from the paper's recipe."""
    check_selector_flags(args)
    fill_defaults(args, recipe(args.dataset, args.noise_kind, args.noise_rate, recipe_variant(args), args.selector))
    if args.lambda_u is None:
        rate = "" if args.noise_rate is None else f" {args.noise_rate:g}"
        raise UserError(f"DivideMix publishes no lambda_u for {args.dataset} {args.noise_kind} noise{rate}; pass "
                        f"--lambda_u (e.g. 25)")
    if args.lambda_u < 0:
        raise UserError(f"--lambda_u must be 0 or more, got {args.lambda_u}")
    resolve_selector_args(args)
    if args.T <= 0 or args.alpha <= 0:
        raise UserError(f"--temperature and --alpha must be positive (got {args.T}, {args.alpha})")
    if args.warmup < 0:
        raise UserError(f"--warmup must be 0 or more, got {args.warmup}")
    if args.warmup >= args.epochs:
        raise UserError(f"--warmup {args.warmup} leaves no DivideMix epoch within --epochs {args.epochs}")
    if args.val_size:
        raise UserError(f"--val_size {args.val_size}: DivideMix trains on the whole training set and reports test "
                        f"accuracy; drop --val_size or pass 0")
    return args


def warmup_one_epoch(model: nn.Module, loader: Iterable, optimizer: torch.optim.Optimizer, *,
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


def mixmatch_one_epoch(model: nn.Module, peer: nn.Module, labelled: Iterable, unlabelled: Iterable | None,
                       w: torch.Tensor, optimizer: torch.optim.Optimizer, args: argparse.Namespace, epoch: int,
                       num_classes: int, rng: np.random.Generator, device: torch.device, desc: str,
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
            # One forward per view and network, unlabelled first, as DivideMix does (Train_cifar.py:64-67,76-77): the
            # network being trained stays in train mode, so each view's batch statistics normalise it and update its
            # running statistics.
            inputs, targets = [x1, x2], []  # + [u1, u2]; targets: [refined x twice] + [guessed u twice]
            if unlabelled_iter is not None:
                try:
                    u1, u2, _, _ = next(unlabelled_iter)
                except StopIteration:
                    unlabelled_iter = iter(unlabelled)
                    u1, u2, _, _ = next(unlabelled_iter)
                u1, u2 = u1.to(device, non_blocking=True), u2.to(device, non_blocking=True)
                guesses = [forward(m, u).softmax(1) for m in (plain, peer) for u in (u1, u2)]  # 4 per sample
                targets_u = co_guess(guesses, args.T)
                inputs += [u1, u2]
            p_x = (forward(plain, x1).softmax(1) + forward(plain, x2).softmax(1)) / 2
            targets_x = co_refine(F.one_hot(y, num_classes), w[index], p_x, args.T)
            targets = [targets_x, targets_x] + ([targets_u, targets_u] if len(inputs) == 4 else [])
        mixed_x, mixed_y, _ = mixup(torch.cat(inputs), torch.cat(targets), args.alpha, rng)
        logits = forward(model, mixed_x)
        loss_x = soft_cross_entropy(logits[:2 * batch], mixed_y[:2 * batch])
        loss_u = unlabelled_mse(logits[2 * batch:], mixed_y[2 * batch:]) if len(inputs) == 4 else logits.new_zeros(())
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


class DivideMix(Trainer):
    """DivideMix / F-DivideMix on the shared run skeleton: two networks, co-divide, MixMatch."""

    name = "dividemix"
    ensemble = True  # the test accuracy is the two networks' ensemble's

    def __init__(self, run: Run) -> None:
        super().__init__(run)
        # selector_states[i]: what network i's selector carries from round to round (loss-gmm: recent normalised
        # losses); trained_on[i]: the samples network i last trained on as labelled, by dataset index (its reference
        # set with --reference previous).
        self.selector_states = [REGISTRY[self.args.selector].init_state() for _ in range(2)]
        self.trained_on: list[torch.Tensor | None] = [None, None]

    resolve_args = staticmethod(resolve_args)

    @staticmethod
    def num_networks(args: argparse.Namespace) -> int:
        return 2

    @staticmethod
    def describe(args: argparse.Namespace) -> dict:
        label = LABELS.get(args.selector, f"DivideMix ({REGISTRY[args.selector].label} selector)")
        return {"method": "dividemix", "loss": "mixmatch", "selector": args.selector, "label": label}

    @staticmethod
    def run_name_parts(args: argparse.Namespace) -> list[str]:
        return ["dividemix", args.selector]

    def state_dict(self) -> dict:
        return {"selector_states": self.selector_states, "trained_on": self.trained_on}

    def load_state_dict(self, state: dict) -> None:
        self.selector_states, self.trained_on = state["selector_states"], state["trained_on"]

    def train_epoch(self, epoch: int, row: dict, order: torch.Generator, augment: torch.Generator) -> None:
        args, run = self.args, self.run
        nets, world = run.nets, run.world
        rng = np.random.default_rng((args.seed % 2**32, epoch, world.rank))  # mixup weights and partners
        # --num_batches counts the batches of all processes together
        max_batches = None if args.num_batches is None else math.ceil(args.num_batches / world.world_size)
        if epoch < args.warmup:
            # DivideMix warms up on batches of twice the MixMatch size (64 labelled + 64 unlabelled), each network on
            # its own class-balanced draw with --num_batches (DM Train_clothing1M.py:245-250).
            for i in range(2):
                loader = run.batches(self.pool(2 * args.batch_size, order), batch_size=2 * args.batch_size,
                                     augment=augment, shuffle=order)
                metrics = warmup_one_epoch(nets.train_models[i], loader, nets.optimizers[i],
                                           confidence_penalty=args.warmup_penalty == "on", max_batches=max_batches,
                                           device=run.device, desc=f"warm-up {epoch} net {i + 1}", amp=args.amp,
                                           scaler=nets.scalers[i])
                row.update({f"train/net{i + 1}/{k}": v for k, v in metrics.items()})
        else:
            # Each network splits its own samples (all, or its own draw: DM Train_clothing1M.py:181,268-271).
            pools = [self.pool(args.batch_size, order) for _ in range(2)]
            splits = [self.divide(i, pools[i], epoch, row, augment) for i in range(2)]
            for i in range(2):
                peer = 1 - i
                pool, sel = pools[peer], splits[peer]  # co-divide: network i learns from its peer's split
                labelled_idx, unlabelled_idx = pool[sel.clean_mask.cpu()], pool[~sel.clean_mask.cpu()]
                self.trained_on[i] = torch.zeros(run.num_train, dtype=torch.bool).index_fill_(0, labelled_idx, True)
                tag = f"train/net{i + 1}"
                row[f"{tag}/labelled"], row[f"{tag}/unlabelled"] = len(labelled_idx), len(unlabelled_idx)
                if len(labelled_idx) == 0:
                    print0(f"epoch {epoch}: network {peer + 1} labelled no sample clean; network {i + 1} skips "
                           f"this epoch")
                    continue
                views = dict(batch_size=args.batch_size, augment=augment, shuffle=order, two_views=True)
                labelled = run.batches(labelled_idx, **views)
                mix_unlabelled = len(unlabelled_idx) > 0 and args.unlabelled == "mix"
                unlabelled = run.batches(unlabelled_idx, **views) if mix_unlabelled else None
                w = sel.clean_prob.new_zeros(run.num_train, device=run.device)  # the peer's clean probability
                w[pool.to(run.device)] = sel.clean_prob.to(run.device)
                metrics = mixmatch_one_epoch(nets.train_models[i], nets.models[peer], labelled, unlabelled, w,
                                             nets.optimizers[i], args, epoch, run.num_classes, rng, run.device,
                                             desc=f"epoch {epoch} net {i + 1}", scaler=nets.scalers[i],
                                             max_batches=max_batches)
                row.update({f"{tag}/{k}": v for k, v in metrics.items()})
        losses = [row[f"train/net{i + 1}/loss"] for i in range(2) if f"train/net{i + 1}/loss" in row]
        row["train/loss"] = sum(losses) / len(losses) if losses else None

    def pool(self, batch_size: int, order: torch.Generator) -> torch.Tensor:
        """The samples a network works on this epoch: all of them, or with ``--num_batches`` a fresh class-balanced
        draw of ``num_batches * batch_size`` distinct samples (a class short of its share gives fewer)."""
        run = self.run
        if self.args.num_batches is None:
            return torch.arange(run.num_train)
        return balanced_subset(run.data.noisy, self.args.num_batches * batch_size, run.num_classes, order)

    def divide(self, i: int, pool: torch.Tensor, epoch: int, row: dict, augment: torch.Generator) -> Selection:
        """Network ``i``'s split of the samples ``pool`` from its eval-mode outputs on un-augmented images.

        Row ``j`` of the result is sample ``pool[j]``: ``clean_prob`` = w, ``clean_mask`` = w > p_threshold.
        The selector's state (loss-gmm: the ``--loss_history`` - 1 previous epochs' normalised losses) carries
        over to the next epoch.
        """
        args, run = self.args, self.run
        t0 = time.time()
        features, logits, positions = run.extract(run.nets.models[i], pool, augment)
        previous = self.trained_on[i] if args.reference == "previous" else None
        sel = select_samples(selector_config(args), features, logits, run.data.noisy[pool][positions],
                             run.num_classes, positions=positions, num_samples=len(pool),
                             ref_mask=None if previous is None else previous[pool][positions],
                             state=self.selector_states[i])
        run.record_round(f"select/net{i + 1}", sel, pool, epoch, row, seconds=time.time() - t0,
                         file_suffix=f"_net{i + 1}", summary=i == 0)
        return sel


def main(args: argparse.Namespace) -> dict:
    return fit(DivideMix, args)


if __name__ == "__main__":
    run_cli(lambda: main(get_args_parser().parse_args()))
