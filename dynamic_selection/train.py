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
import time
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from data_loader.sampling import balanced_epoch_indices, balanced_subset
from dynamic_selection.recipes import recipe
from engine.args import (add_common_args, add_selector_args, add_speed_args, check_selector_args, fill_defaults,
                         input_kind, selector_config)
from engine.data import TrainData
from engine.loop import Run, Trainer, fit
from fine.amp import autocast
from fine.distributed import all_reduce_sum, print0
from fine.errors import UserError, run_cli
from fine.losses import LOSSES, build_loss, default_loss_hparams
from fine.selection import select_samples

METHODS = ("standard", "fine", "f-coteaching", "coteaching", "coteaching+")
TWO_NETS = ("f-coteaching", "coteaching", "coteaching+")
SELECTING = ("fine", "f-coteaching")  # methods with periodic selection rounds
LABELS = {"fine": "FINE", "f-coteaching": "F-Coteaching", "coteaching": "Co-teaching",
          "coteaching+": "Co-teaching+"}


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dynamic_selection.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    add_speed_args(parser)
    g = parser.add_argument_group("method")
    g.add_argument("--method", type=str, default="fine", choices=METHODS, help="training method (see above)")
    g.add_argument("--loss", type=str, default="ce", choices=LOSSES, help="training loss")
    add_selector_args(parser, choices=("fine", "small-loss", "loss-gmm"), default=None,
                      title="selection rounds (fine, f-coteaching; f-coteaching always selects with fine)")
    s = parser.add_argument_group("selection schedule")
    s.add_argument("--warmup", type=int, default=None, help="epochs on all data before the first selection round")
    s.add_argument("--every", type=int, default=None, help="epochs between selection rounds")
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
    selecting = args.method in SELECTING
    if not selecting:
        for flag in ("selector", "warmup", "every", "reference", "p_threshold"):
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
    fill_defaults(args, recipe(args.dataset, args.method, args.loss, input_kind(args)))
    fill_defaults(args, {f"{args.loss}_{k}": v for k, v in default_loss_hparams(args.loss, args.dataset).items()})
    if selecting and (args.every < 1 or args.warmup < 0):
        raise UserError(f"--every must be at least 1 and --warmup at least 0 (got {args.every}, {args.warmup})")
    if selecting and args.warmup >= args.epochs:
        raise UserError(f"--warmup {args.warmup} leaves no epoch for selection within --epochs {args.epochs}")
    check_selector_args(args)
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


def train_one_epoch_coteaching(models: list[nn.Module], loader: Iterable, optimizers: list[torch.optim.Optimizer],
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
    totals = torch.zeros(5, dtype=torch.float64, device=device)  # loss sum, hits (net 1), samples, kept, clean kept
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


class DynamicSelection(Trainer):
    """Standard training, FINE / F-Coteaching selection rounds, Co-teaching(+) on the shared run skeleton."""

    name = "dynamic_selection"

    def __init__(self, run: Run) -> None:
        super().__init__(run)
        args, count = run.args, len(run.nets.models)
        self.losses = [build_loss(args.loss, num_classes=run.num_classes, num_samples=run.num_train,
                                  **loss_hparams(args)).to(run.device) for _ in range(count)]
        # train_masks[i]: samples network i trains on (None: all); ref_masks[i]: last selection made from network
        # i's features; step: optimisation steps so far (Co-teaching+).
        self.train_masks: list[torch.Tensor | None] = [None] * count
        self.ref_masks: list[torch.Tensor | None] = [None] * count
        self.step = 0

    resolve_args = staticmethod(resolve_args)

    @staticmethod
    def num_networks(args: argparse.Namespace) -> int:
        return 2 if args.method in TWO_NETS else 1

    @staticmethod
    def describe(args: argparse.Namespace) -> dict:
        if args.method == "standard":
            label = f"Standard ({args.loss.upper()})"
        else:
            label = LABELS[args.method] + ("" if args.loss == "ce" else f" + {args.loss.upper()}")
            label += f" ({args.selector} selector)" if args.method == "fine" and args.selector != "fine" else ""
        return {"method": args.method, "loss": args.loss, "selector": args.selector, "label": label}

    @staticmethod
    def run_name_parts(args: argparse.Namespace) -> list[str]:
        return [p for p in (args.method, args.loss, args.selector) if p is not None]

    @staticmethod
    def resolve_with_data(args: argparse.Namespace, data: TrainData) -> None:
        """Co-teaching's tau defaults to the realised noise rate of the training labels."""
        if args.forget_rate is None and (args.method in ("coteaching", "coteaching+") or args.selector == "small-loss"):
            if data.is_clean is None:
                raise UserError("this dataset has no clean labels to estimate the noise rate; pass --forget_rate")
            args.forget_rate = round(1.0 - data.is_clean.float().mean().item(), 4)

    def state_dict(self) -> dict:
        return {"train_masks": self.train_masks, "ref_masks": self.ref_masks, "step": self.step}

    def load_state_dict(self, state: dict) -> None:
        self.train_masks, self.ref_masks, self.step = state["train_masks"], state["ref_masks"], state["step"]

    def train_epoch(self, epoch: int, row: dict, order: torch.Generator, augment: torch.Generator) -> None:
        args, run = self.args, self.run
        if args.method in SELECTING and epoch >= args.warmup and (epoch - args.warmup) % args.every == 0:
            self.selection_round(epoch, row, order, augment)
        nets, noisy = run.nets, run.data.noisy
        if args.method in ("coteaching", "coteaching+"):
            indices = epoch_samples(args, noisy, None, run.num_classes, order)
            metrics, self.step = train_one_epoch_coteaching(
                nets.train_models, run.batches(torch.tensor(indices), batch_size=args.batch_size, augment=augment),
                nets.optimizers, self.losses, forget_rate_at(args, epoch), disagree=args.method == "coteaching+",
                step=self.step, init_steps=args.init_steps, is_clean=_on(run.data.is_clean, run.device),
                device=run.device, desc=f"epoch {epoch}", amp=args.amp, scalers=nets.scalers)
            row.update({f"train/{k}": v for k, v in metrics.items()})
            return
        for i, mask in enumerate(self.train_masks):
            indices = epoch_samples(args, noisy, None if mask is None else mask.nonzero().squeeze(1),
                                    run.num_classes, order)
            batches = run.batches(torch.tensor(indices), batch_size=args.batch_size, augment=augment)
            metrics = train_one_epoch(nets.train_models[i], batches, nets.optimizers[i], self.losses[i],
                                      _on(run.data.clean, run.device), run.device,
                                      desc=f"epoch {epoch}" + (f" net {i + 1}" if len(self.train_masks) > 1 else ""),
                                      amp=args.amp, scaler=nets.scalers[i], total=len(batches))
            tag = f"train/net{i + 1}" if i else "train"
            row.update({f"{tag}/{k}": v for k, v in metrics.items()})
            row[f"{tag}/samples"] = len(indices)

    def selection_round(self, epoch: int, row: dict, order: torch.Generator, augment: torch.Generator) -> None:
        """Select from each network's features; network i (f-coteaching: its peer) trains on the selection until
        the next round. The previous selection from the same network is the reference set (``--reference``)."""
        args, run = self.args, self.run
        pool = selection_pool(args, run.data.noisy, run.num_classes, order)  # the samples this round scores
        count = len(self.train_masks)
        for i in range(count):
            t0 = time.time()
            features, logits, positions = run.extract(run.nets.models[i], pool, augment)
            previous = self.ref_masks[i] if args.reference == "previous" else None
            ref_mask = previous[pool][positions] if previous is not None else None
            sel = select_samples(selector_config(args, keep_ratio=_keep_ratio(args)), features, logits,
                                 run.data.noisy[pool][positions], run.num_classes, positions=positions,
                                 num_samples=len(pool), ref_mask=ref_mask)
            if not sel.clean_mask.any():
                print0(f"epoch {epoch}: selection from network {i + 1} is empty; keeping the previous one")
                continue
            selected = torch.zeros(run.num_train, dtype=torch.bool)  # by dataset index
            selected[pool] = sel.clean_mask.cpu()
            self.ref_masks[i] = selected
            self.train_masks[(i + 1) % count] = selected  # f-coteaching: the peer trains on it
            run.record_round(f"select/net{i + 1}" if count > 1 else "select", sel, pool, epoch, row,
                             seconds=time.time() - t0, file_suffix=f"_net{i + 1}" if count > 1 else "",
                             summary=i == 0)


def _keep_ratio(args: argparse.Namespace) -> float | None:
    return None if args.forget_rate is None else 1.0 - args.forget_rate


def _on(tensor: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    return None if tensor is None else tensor.to(device)


def main(args: argparse.Namespace) -> dict:
    return fit(DynamicSelection, args)


if __name__ == "__main__":
    run_cli(lambda: main(get_args_parser().parse_args()))
