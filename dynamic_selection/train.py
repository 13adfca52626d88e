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
from engine.args import (add_common_args, add_selector_args, add_speed_args, check_selector_flags, fill_defaults,
                         recipe_variant, resolve_selector_args, selector_config)
from engine.data import TrainData
from engine.loop import Run, Trainer, fit
from fine.amp import autocast
from fine.distributed import all_reduce_sum, print0
from fine.errors import UserError, run_cli
from fine.losses import LOSSES, build_loss
from fine.selection import REGISTRY, SelectorConfig, select_samples
from fine.selection.registry import all_options

METHODS = ("standard", "fine", "f-coteaching", "coteaching", "coteaching+")
TWO_NETS = ("f-coteaching", "coteaching", "coteaching+")
SELECTING = ("fine", "f-coteaching")  # methods with periodic selection rounds
OWN = ("forget_rate",)  # the small-loss selector's option, which Co-teaching reads too (with more forms)
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
    add_selector_args(parser, default=None, own=OWN,
                      title="selection rounds (fine, f-coteaching; f-coteaching always selects with fine)")
    s = parser.add_argument_group("selection schedule")
    s.add_argument("--warmup", type=int, default=None, help="epochs on all data before the first selection round")
    s.add_argument("--every", type=int, default=None, help="epochs between selection rounds")
    s.add_argument("--bn_after_selection", type=str, default=None, choices=("train", "eval"),
                   help="batch norm while training on a selection: train (batch statistics), or eval (running "
                        "statistics, frozen), which FINE_official's F-Coteaching does by accident after its first "
                        "round (selection/util.py:56 sets eval mode, which its trainer never undoes); default per "
                        "recipe")
    c = parser.add_argument_group("co-teaching family and small-loss selection")
    c.add_argument("--forget_rate", type=forget_rate_value, default=None,
                   help="tau, the fraction of large-loss samples dropped: a number, 'published' (0.9 x --noise_rate, "
                        "FINE_official loss/coteach.py:64), 'realised' (the measured noise rate; needs clean labels) "
                        "or 'auto' (FINE's estimate of the noise rate from network 1's features: Co-teaching "
                        "re-estimates it after every epoch of its ramp and keeps the last; the small-loss selector "
                        "at every round); default per recipe")
    c.add_argument("--num_gradual", type=int, default=None,
                   help="Co-teaching's forget rate ramps from 0 to tau over the first num_gradual - 1 epochs")
    c.add_argument("--init_epochs", type=int, default=None,
                   help="coteaching+: epochs of plain co-teaching before disagreement is used (the Co-teaching+ "
                        "code: 20 on CIFAR-10, 5 on CIFAR-100; FINE_official: 0)")
    lg = parser.add_argument_group("robust-loss hyperparameters (default per dataset)")
    lg.add_argument("--gce_q", type=float, default=None, help="GCE exponent q")
    lg.add_argument("--sce_alpha", type=float, default=None, help="SCE weight of cross-entropy")
    lg.add_argument("--sce_beta", type=float, default=None, help="SCE weight of reverse cross-entropy")
    lg.add_argument("--sce_a", type=float, default=None,
                    help="SCE's A, the log of the clamped one-hot's zeros: -4 as the paper and FINE_official; "
                         "-9.21 (log 1e-4) as the SCE authors' code")
    lg.add_argument("--elr_beta", type=float, default=None, help="ELR target momentum beta")
    lg.add_argument("--elr_lambda", type=float, default=None, help="ELR regularisation weight lambda")
    return parser


def resolve_args(args: argparse.Namespace) -> argparse.Namespace:
    """Check the flags against the method and fill unset ones from the paper's recipe."""
    selecting = args.method in SELECTING
    if not selecting:
        for flag in ("selector", "warmup", "every", "reference", *(set(all_options()) - set(OWN))):
            if getattr(args, flag) is not None:
                raise UserError(f"--{flag} applies to --method fine or f-coteaching, not {args.method}")
    if args.method == "f-coteaching" and args.selector not in (None, "fine"):
        raise UserError("--method f-coteaching always selects with FINE; drop --selector or use --method fine")
    if args.selector is None and selecting:
        args.selector = "fine"
    if selecting:
        check_selector_flags(args, own=OWN)
    uses_forget_rate = args.method in ("coteaching", "coteaching+") or args.selector == "small-loss"
    if not uses_forget_rate and args.forget_rate is not None:
        raise UserError(f"--forget_rate applies to --method coteaching or coteaching+ and to --selector small-loss, "
                        f"not --method {args.method}{f' --selector {args.selector}' if args.selector else ''}; drop it")
    if args.method != "coteaching+" and args.init_epochs is not None:
        raise UserError("--init_epochs applies to --method coteaching+ only")
    fill_defaults(args, recipe(args.dataset, args.method, args.loss, recipe_variant(args), args.noise_kind))
    unused = ({"selector", "warmup", "every", "reference", "bn_after_selection", *(set(all_options()) - set(OWN))}
              if not selecting else set())
    if args.method not in ("coteaching", "coteaching+"):
        unused |= {"num_gradual", "init_epochs"}
    if args.method != "coteaching+":
        unused.add("init_epochs")
    for flag in unused:  # what the recipe filled but this method does not use, so the resolved flags show it
        setattr(args, flag, None)
    if not uses_forget_rate:
        args.forget_rate = None
    elif args.forget_rate == "published":
        if args.noise_rate is None:
            raise UserError(f"--forget_rate published is 0.9 x --noise_rate, and --noise_kind {args.noise_kind} has "
                            f"none; pass --forget_rate auto (FINE's estimate) or a number")
        args.forget_rate = round(0.9 * args.noise_rate, 6)
    if selecting and (args.every < 1 or args.warmup < 0):
        raise UserError(f"--every must be at least 1 and --warmup at least 0 (got {args.every}, {args.warmup})")
    if selecting and args.warmup >= args.epochs:
        raise UserError(f"--warmup {args.warmup} leaves no epoch for selection within --epochs {args.epochs}")
    if selecting:  # 'auto' and 'realised' become numbers later, checked then
        resolve_selector_args(args, own=OWN, **({"forget_rate": 0.0} if isinstance(args.forget_rate, str) else {}))
    if isinstance(args.forget_rate, float) and not 0.0 <= args.forget_rate < 1.0:
        raise UserError(f"--forget_rate {args.forget_rate} is outside [0, 1)")
    return args


def forget_rate_value(text: str) -> float | str:
    """``--forget_rate``: a number, or one of ``published``, ``realised``, ``auto``."""
    if text in ("published", "realised", "auto"):
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a number nor published, realised or auto") from None


def loss_hparams(args: argparse.Namespace) -> dict:
    """The ``--<loss>_<name>`` flags of the chosen loss, as keyword arguments of ``build_loss``."""
    prefix = f"{args.loss}_"
    return {k[len(prefix):]: v for k, v in vars(args).items() if k.startswith(prefix)}


def forget_rate_at(tau: float, epoch: int, num_gradual: int) -> float:
    """Co-teaching's forget rate in 0-based ``epoch``: the published ramp ``linspace(0, tau, num_gradual - 1)``
    indexed by epoch (Kthyeon/FINE_official: dynamic_selection/loss/coteach.py:65-66,39), then ``tau``."""
    return tau * min(epoch / max(num_gradual - 2, 1), 1.0)


def train_one_epoch(model: nn.Module, loader: Iterable, optimizer: torch.optim.Optimizer, loss_fn: nn.Module,
                    clean_labels: torch.Tensor | None, device: torch.device, desc: str, *, amp: str = "off",
                    scaler: torch.amp.GradScaler | None = None, total: int | None = None,
                    frozen_bn: bool = False) -> dict[str, float]:
    """One epoch of ``loss_fn`` on the batches ``(x, y, index)`` of ``loader`` (a DataLoader or a TensorLoader epoch).

    Returns the mean loss and the training accuracy (%) against the noisy and, when known, the clean labels.
    Sums stay on ``device`` until the end of the epoch, so there is no host synchronisation per step. ``amp`` and
    ``scaler`` select mixed precision (:mod:`fine.amp`). ``frozen_bn`` trains in eval mode (batch norm with its
    running statistics, which stay as they are), as FINE_official's F-Coteaching does after its first round.
    """
    model.train(not frozen_bn)
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
                               loss_fns: list[nn.Module], forget_rate: float, *, disagree: bool, epoch: int,
                               is_clean: torch.Tensor | None, device: torch.device, desc: str, amp: str = "off",
                               scalers: list[torch.amp.GradScaler] | None = None) -> dict[str, float]:
    """Co-teaching(+) epoch: each network updates on the small-loss samples picked by its peer.

    Each network keeps ``int((1 - forget_rate) * n)`` of the n candidates (all n when that is 0), as the published
    code does (Kthyeon/FINE_official: dynamic_selection/loss/coteach.py:40-48). With ``disagree`` (Co-teaching+) the
    candidates are the samples on which the two networks' predictions differ; a batch with no disagreement trains both
    networks on all its samples while ``(epoch + 1) * batch_index < 5000`` and is skipped after that (the published
    rule, loss/coteach.py:98,114-119, xingruiyu/coteaching_plus: loss.py:60,70-78, with the 1-based epoch).
    """
    for m in models:
        m.train()
    scalers = scalers or [torch.amp.GradScaler(device.type, enabled=False) for _ in models]
    totals = torch.zeros(5, dtype=torch.float64, device=device)  # loss sum, hits (net 1), samples, kept, clean kept
    for batch_index, (x, y, index) in enumerate(tqdm(loader, desc=desc, leave=False, dynamic_ncols=True,
                                                     disable=None)):
        x, y, index = x.to(device, non_blocking=True), y.to(device, non_blocking=True), index.to(device)
        with autocast(device, amp):
            logits = [m(x).float() for m in models]
        everything = torch.arange(len(y), device=device)
        keep = [everything, everything]
        if disagree:
            candidates = (logits[0].argmax(1) != logits[1].argmax(1)).nonzero().squeeze(1)
            if len(candidates) == 0 and (epoch + 1) * batch_index >= 5000:  # no update: the samples count, none kept
                totals += torch.tensor([0.0, float((logits[0].argmax(1) == y).sum()), len(y), 0.0, 0.0],
                                       dtype=torch.float64, device=device)
                continue
        else:
            candidates = everything
        if len(candidates):
            num_keep = int((1.0 - forget_rate) * len(candidates)) or len(candidates)
            keep = []
            for net_logits in logits:  # each network ranks the candidates by its own cross-entropy
                ce = F.cross_entropy(net_logits[candidates].detach(), y[candidates], reduction="none")
                keep.append(candidates[ce.argsort()[:num_keep]])
        losses = [loss_fns[net](logits[net][keep[peer]], y[keep[peer]], index[keep[peer]])
                  for net, peer in ((0, 1), (1, 0))]
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        sum(sc.scale(loss) for sc, loss in zip(scalers, losses)).backward()
        for sc, opt in zip(scalers, optimizers):
            sc.step(opt)
            sc.update()
        clean_kept = is_clean[index[keep[1]]].sum() if is_clean is not None else 0
        totals += torch.cat([(losses[0].detach() * len(y)).reshape(1), (logits[0].argmax(1) == y).sum().reshape(1),
                             torch.tensor([len(y), len(keep[1])], device=device),
                             torch.as_tensor(clean_kept, device=device).reshape(1)]).double()
    loss_sum, hits, n, kept, clean_kept = all_reduce_sum(totals).tolist()
    n = max(n, 1.0)
    return {"loss": loss_sum / n, "acc_noisy": 100 * hits / n, "kept_fraction": kept / n,
            "kept_precision": clean_kept / max(kept, 1.0) if is_clean is not None else None}


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
    later_epoch_wins_ties = True  # FINE_official picks its best checkpoint with >= (base/base_trainer.py:115)

    def __init__(self, run: Run) -> None:
        super().__init__(run)
        args, count = run.args, len(run.nets.models)
        self.losses = [build_loss(args.loss, num_classes=run.num_classes, num_samples=run.num_train,
                                  **loss_hparams(args)).to(run.device) for _ in range(count)]
        # train_masks[i]: samples network i trains on (None: all), which are also the reference set of the class
        # directions in network i's features at the next round; tau: --forget_rate auto's estimate, once made.
        self.train_masks: list[torch.Tensor | None] = [None] * count
        self.tau: float | None = None
        # selector_states[i]: what the selector carries from round to round in network i's features (loss-gmm's
        # loss history), checkpointed with the rest
        self.selector_states = [REGISTRY[args.selector].init_state() if args.selector else {} for _ in range(count)]

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
            if args.method == "fine" and args.selector != "fine":
                label += f" ({REGISTRY[args.selector].label} selector)"
        return {"method": args.method, "loss": args.loss, "selector": args.selector, "label": label}

    @staticmethod
    def run_name_parts(args: argparse.Namespace) -> list[str]:
        return [p for p in (args.method, args.loss, args.selector) if p is not None]

    @staticmethod
    def resolve_with_data(args: argparse.Namespace, data: TrainData) -> None:
        """``--forget_rate realised``: the measured noise rate of the training labels."""
        if args.forget_rate == "realised":
            if data.is_clean is None:
                raise UserError("--forget_rate realised needs clean labels, which this dataset has not; pass "
                                "--forget_rate auto (FINE's estimate) or a number")
            args.forget_rate = round(1.0 - data.is_clean.float().mean().item(), 4)

    def state_dict(self) -> dict:
        return {"train_masks": self.train_masks, "tau": self.tau, "selector_states": self.selector_states}

    def load_state_dict(self, state: dict) -> None:
        self.train_masks, self.tau = state["train_masks"], state["tau"]
        self.selector_states = state["selector_states"]

    def train_epoch(self, epoch: int, row: dict, order: torch.Generator, augment: torch.Generator) -> None:
        args, run = self.args, self.run
        if args.method in SELECTING and epoch >= args.warmup and (epoch - args.warmup) % args.every == 0:
            self.selection_round(epoch, row, order, augment)
        nets, noisy = run.nets, run.data.noisy
        if args.method in ("coteaching", "coteaching+"):
            if args.forget_rate == "auto" and 0 < epoch <= args.num_gradual - 2:  # re-estimated while tau ramps up
                self.tau = 1.0 - self.fine_keep_ratio(selection_pool(args, noisy, run.num_classes, order), augment)
                row["train/estimated_noise_rate"] = self.tau
            tau = args.forget_rate if isinstance(args.forget_rate, float) else (self.tau or 0.0)
            row["train/forget_rate"] = forget_rate_at(tau, epoch, args.num_gradual)
            indices = epoch_samples(args, noisy, None, run.num_classes, order)
            metrics = train_one_epoch_coteaching(
                nets.train_models, run.batches(torch.tensor(indices), batch_size=args.batch_size, augment=augment),
                nets.optimizers, self.losses, row["train/forget_rate"],
                disagree=args.method == "coteaching+" and epoch >= args.init_epochs, epoch=epoch,
                is_clean=_on(run.data.is_clean, run.device), device=run.device, desc=f"epoch {epoch}", amp=args.amp,
                scalers=nets.scalers)
            row.update({f"train/{k}": v for k, v in metrics.items()})
            return
        for i, mask in enumerate(self.train_masks):
            indices = epoch_samples(args, noisy, None if mask is None else mask.nonzero().squeeze(1),
                                    run.num_classes, order)
            batches = run.batches(torch.tensor(indices), batch_size=args.batch_size, augment=augment)
            metrics = train_one_epoch(nets.train_models[i], batches, nets.optimizers[i], self.losses[i],
                                      _on(run.data.clean, run.device), run.device,
                                      desc=f"epoch {epoch}" + (f" net {i + 1}" if len(self.train_masks) > 1 else ""),
                                      amp=args.amp, scaler=nets.scalers[i], total=len(batches),
                                      frozen_bn=args.bn_after_selection == "eval" and mask is not None)
            tag = f"train/net{i + 1}" if i else "train"
            row.update({f"{tag}/{k}": v for k, v in metrics.items()})
            row[f"{tag}/samples"] = len(indices)

    def selection_round(self, epoch: int, row: dict, order: torch.Generator, augment: torch.Generator) -> None:
        """Select from each network's features; network i (F-Coteaching: its peer) trains on the selection until the
        next round. With ``--reference previous`` the class directions in network i's features come from the
        samples network i trained on since the last round (F-Coteaching: its peer's selection, as FINE_official's
        trainer/dynamic_coteach_trainer.py:114-126); the whole class in the first round."""
        args, run = self.args, self.run
        pool = selection_pool(args, run.data.noisy, run.num_classes, order)  # the samples this round scores
        references = list(self.train_masks) if args.reference == "previous" else [None] * len(self.train_masks)
        for i, reference in enumerate(references):
            t0 = time.time()
            features, logits, positions = run.extract(run.nets.models[i], pool, augment)
            labels = run.data.noisy[pool][positions]
            values = {}
            if args.forget_rate == "auto":  # the small-loss selector drops FINE's estimate of the noise rate
                values["forget_rate"] = 1.0 - self.fine_keep_ratio(pool, augment, (features, logits, positions))
            sel = select_samples(selector_config(args, **values), features, logits, labels, run.num_classes,
                                 positions=positions, num_samples=len(pool),
                                 ref_mask=None if reference is None else reference[pool][positions],
                                 state=self.selector_states[i])
            if not sel.clean_mask.any():
                print0(f"epoch {epoch}: selection from network {i + 1} is empty; keeping the previous one")
                continue
            selected = torch.zeros(run.num_train, dtype=torch.bool)  # by dataset index
            selected[pool] = sel.clean_mask.cpu()
            self.train_masks[(i + 1) % len(references)] = selected  # F-Coteaching: the peer trains on it
            count = len(references)
            run.record_round(f"select/net{i + 1}" if count > 1 else "select", sel, pool, epoch, row,
                             seconds=time.time() - t0, file_suffix=f"_net{i + 1}" if count > 1 else "",
                             summary=i == 0)

    def fine_keep_ratio(self, pool: torch.Tensor, augment: torch.Generator,
                        features: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None) -> float:
        """FINE's estimate of the clean fraction of the samples ``pool``, from network 1's features (whole classes
        as the reference set): what ``--forget_rate auto`` keeps."""
        run = self.run
        features, logits, positions = features or run.extract(run.nets.models[0], pool, augment)
        sel = select_samples(SelectorConfig(), features, logits, run.data.noisy[pool][positions], run.num_classes,
                             positions=positions, num_samples=len(pool))
        return float(sel.clean_mask.float().mean())


def _on(tensor: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    return None if tensor is None else tensor.to(device)


def main(args: argparse.Namespace) -> dict:
    return fit(DynamicSelection, args)


if __name__ == "__main__":
    run_cli(lambda: main(get_args_parser().parse_args()))
