"""Selection-quality benchmark: which detector finds the clean samples, on real data and real training runs.

    python -m bench.detection --quick                    # digits, sym 50% and asym 40%, one seed: a few minutes
    python -m bench.detection --dataset digits --noise sym:0.2 sym:0.5 sym:0.8 asym:0.4 --seeds 1 2 3
    python -m bench.detection --dataset fashion_mnist --data_path /usr/share/datasets/fashion-mnist --seeds 1
    python -m bench.detection --peers ...               # FINE vs cleanlab and k-NN on embeddings (bench/peers.py)

A *cell* is one dataset, noise setting and seed; its data come from ``data_loader.build_datasets`` (noisy labels
saved under ``--data_path``, so every detector and the trainer see the same labels). Fashion-MNIST is tried as a new
user would (issue #16): a class-balanced subset of 5,000 training and 3,000 test images, its noisy labels made by
``data_loader.noise`` (the Fashion-MNIST asymmetric map), written as a user's ``.npz`` (``y_train`` noisy,
``y_train_clean`` clean) and read with ``--dataset npz --noise_kind none``. For each cell:

1. **static**: the network is trained on all noisy labels (the warm-up, then on to the end: standard training); at
   every selection round (epoch ``warmup``, ``warmup + every``, ...) the penultimate features and logits of the
   un-augmented training images are extracted once and every ``--detectors`` entry selects from the same outputs.
   Detectors whose reference set is the previous selection keep their own chain of selections from round to round.
2. **bench loop** (``--e2e``): the warm-up is trained once and copied; each listed detector then runs the
   sample-selection loop of ``dynamic_selection.train --method fine`` (select at each round, train only on the
   selection until the next) to the last epoch. Reported: per-round selection quality and the final test accuracy.
3. **trainer** (``--trainer``): ``python -m dynamic_selection.train`` is run in a subprocess for each listed method
   (``standard``, ``fine``, ``loss-gmm`` = ``--method fine --selector loss-gmm``; ``fine:score=abs`` adds
   ``--score abs``) with the bench's schedule flags and otherwise the project's defaults; its ``summary.json`` gives
   the final and best test accuracy.

Per detector and round: precision, recall, F1 (positives = clean samples), AUROC of the detector's score, selected
count, the recall of the never-corrupted classes (noisy classes holding no wrong label; under asymmetric noise) and
every class's clean recall; in the bench loop also the recall among clean samples the previous round kept and among
those it dropped (are dropped clean samples ever re-admitted?). The table shows the last round, averaged over seeds,
with the issue's targets beside the figures; ``--csv`` gets one row per detector and round of every cell.

Detector specs: ``fine`` (the selector's defaults), ``fine:<option>=<value>,...`` (options of
``fine.selection.fine_select`` plus ``reference=previous|class``), ``loss-gmm``, ``small-loss`` (keeps the realised
clean fraction of every class: an oracle rate), ``oracle`` (the clean samples: the ceiling of selection) and, in the
bench loop, ``standard`` (no selection). A bench-loop spec may end in ``@train_aug=0`` (train without
augmentation), ``@extract_aug=1`` (select from augmented images, the published code's behaviour) and/or
``@full_epochs=1`` (every epoch takes as many steps as a full-data epoch, drawing the selection repeatedly).
"""
from __future__ import annotations

import argparse
import copy
import csv
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from torch.utils.data import DataLoader

from data_loader import DatasetBundle, build_datasets
from data_loader.fashion_mnist import load_fashion_mnist
from data_loader.noise import make_noisy_labels
from engine.data import epoch_generator
from fine.errors import UserError, run_cli
from fine.features import extract_features
from fine.losses import build_loss
from fine.models import create_model
from fine.mixture import MixtureFit, fit_gmm, pad_groups
from fine.selection import (Selection, alignment_scores, class_top_eigenvectors, fine_select, loss_gmm_select,
                            selection_metrics, small_loss_select)

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Schedule:
    """Network and optimisation of a bench dataset, passed verbatim to the trainer as flags."""

    arch: str
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    lr_schedule: str  # multistep | cosine
    milestones: tuple[int, ...]
    gamma: float
    val_size: int
    warmup: int
    every: int

    def flags(self) -> list[str]:
        return ["--arch", self.arch, "--epochs", str(self.epochs), "--batch_size", str(self.batch_size), "--lr",
                str(self.lr), "--weight_decay", str(self.weight_decay), "--lr_schedule", self.lr_schedule,
                "--milestones", *map(str, self.milestones), "--gamma", str(self.gamma), "--val_size",
                str(self.val_size)]

    def lr_factor(self, epoch: int) -> float:
        if self.lr_schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * epoch / self.epochs))
        return self.gamma ** sum(epoch >= m for m in self.milestones)


# digits: the trainer's digits recipe (dynamic_selection/recipes.py). fashion_mnist: the 5,000-image subset trained as
# in issue #16 (small CNN, SGD 0.05, batch 128, cosine over 20 epochs, warm-up 8, every 4).
SCHEDULES = {
    "digits": Schedule("small_cnn", 60, 64, 0.05, 5e-4, "multistep", (40,), 0.1, 140, 10, 5),
    "fashion_mnist": Schedule("small_cnn", 20, 128, 0.05, 1e-3, "cosine", (), 0.1, 0, 8, 4),
}
FMNIST_SUBSET = (500, 300)  # training and test images per class
TARGETS = ("targets: fine >= standard (final acc, every noisy cell); sym 50%: recall >= 0.85 at precision >= 0.90; "
           "asym 40%: never-corrupted-class recall >= 0.95 and final acc >= loss-gmm's")
QUICK_DETECTORS = ("fine", "fine:reference=class", "fine:score=squared", "fine:fit=kmeans", "fine:fit=bmm",
                   "fine:score=margin", "loss-gmm", "small-loss")
# Candidates of issue #16 item 3 for keeping clean classes whole that did not become a library option (the winner,
# fine:score=margin, equals cand:score=margin,split=class,guard=negmean); the default static comparison runs them.
CANDIDATES = ("cand:score=margin,split=class", "cand:score=margin,split=class,guard=dip",
              "cand:score=margin,split=class,guard=ashman", "cand:score=margin,split=class,guard=bic",
              "cand:score=margin,split=class,guard=negmean+or-positive", "cand:score=margin,split=pooled",
              "cand:score=margin,split=pooled-std", "cand:score=margin,split=zero",
              "cand:score=align,split=class,guard=dip", "cand:score=align,split=class,guard=ashman",
              "cand:score=align,split=class,guard=bic", "cand:score=align,split=pooled",
              "cand:score=align,split=pooled-std", "cand:score=align,split=2d")
FINE_GRID = tuple(f"fine:reference={r},score={s},fit={f}" for r in ("previous", "class") for s in ("abs", "squared")
                  for f in ("gmm", "kmeans", "bmm"))
_FINE_KEYS = {"reference": str, "fit": str, "score": str, "vector": str, "threshold": float, "normalize": int,
              "max_iter": int, "tol": float, "reg_covar": float}
_CAND_KEYS = {"score": str, "split": str, "guard": str, "reference": str, "threshold": float}
_LOOP_KEYS = ("train_aug", "extract_aug", "full_epochs")


@dataclass
class Detector:
    """A parsed detector spec: ``kind`` fine / loss-gmm / small-loss, selector options and bench-loop options."""

    spec: str
    kind: str
    options: dict = field(default_factory=dict)
    loop: dict = field(default_factory=dict)

    @property
    def reference(self) -> str:
        return self.options.get("reference", "previous")


def parse_detector(spec: str) -> Detector:
    """``name[:k=v,...][@k=v...]`` -> Detector; UserError on an unknown name or option."""
    head, *loop_parts = spec.split("@")
    name, _, opts = head.partition(":")
    if name not in ("fine", "cand", "loss-gmm", "small-loss", "standard", "oracle"):
        raise UserError(f"unknown detector {name!r} in {spec!r}; use fine[:options], loss-gmm or small-loss")
    options, loop = {}, {}
    for item in filter(None, opts.split(",")):
        key, _, value = item.partition("=")
        known = _FINE_KEYS if name == "fine" else _CAND_KEYS if name == "cand" else {}
        if key not in known:
            raise UserError(f"unknown option {key!r} of {name} in {spec!r}; fine takes {', '.join(_FINE_KEYS)}, "
                            f"cand {', '.join(_CAND_KEYS)}")
        options[key] = known[key](value)
    for part in loop_parts:
        for item in filter(None, part.split(",")):
            key, _, value = item.partition("=")
            if key not in _LOOP_KEYS:
                raise UserError(f"unknown bench-loop option {key!r} in {spec!r}; use {', '.join(_LOOP_KEYS)}")
            loop[key] = bool(int(value))
    return Detector(spec, name, options, loop)


def candidate_select(features: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor, num_classes: int,
                     ref_mask: torch.Tensor | None, score: str = "align", split: str = "class", guard: str = "none",
                     threshold: float = 0.5) -> Selection:
    """Candidate FINE variants (issue #16, items 2-3), built from the library's pieces.

    ``score``: ``align`` = FINE's ``|<u_y, z/|z|>|``; ``margin`` = that minus the highest ``|<u_k, z/|z|>|`` over
    the other classes k. ``split``: ``class`` = a 2-GMM per class (FINE's), ``pooled`` = one 2-GMM over all
    samples, ``pooled-std`` = one over the scores standardised per class, ``zero`` = keep scores above 0 (margins),
    ``2d`` = one 2-D GMM over (score, min-max normalised loss). ``guard`` (``class`` split): a class is split only
    when ``dip`` its fitted density has a dip between the two means, ``bic`` the 2-GMM beats one Gaussian by BIC,
    ``ashman`` Ashman's D > 2, ``negmean`` the lower component's mean is below 0 (margins: that population is
    closer to another class); ``or-positive`` keeps every sample with a positive score besides the split's; guards
    combine with ``+``.
    """
    vectors = class_top_eigenvectors(features, labels, num_classes, ref_mask)
    values = alignment_scores(features, labels, vectors, score="margin" if score == "margin" else "abs").double()
    n = len(labels)
    if split == "zero":
        mask = values > 0
        return Selection(clean_mask=mask, clean_prob=mask.float(), scores=values.float())
    if split == "2d":
        from sklearn.mixture import GaussianMixture
        loss = F.cross_entropy(logits, labels, reduction="none").double()
        loss = (loss - loss.min()) / (loss.max() - loss.min()).clamp_min(1e-12)
        x = torch.stack([values, loss], 1).numpy()
        gm = GaussianMixture(2, covariance_type="full", tol=1e-6, max_iter=100, reg_covar=1e-6, random_state=0).fit(x)
        clean = int(np.argmax(gm.means_[:, 0] - gm.means_[:, 1]))
        posterior = torch.from_numpy(gm.predict_proba(x)[:, clean])
        return Selection(clean_mask=posterior > threshold, clean_prob=posterior.float(), scores=values.float())
    if split in ("pooled", "pooled-std"):
        pooled = values
        if split == "pooled-std":
            padded, valid, _ = pad_groups(values, labels, num_classes)
            count = valid.sum(1).clamp_min(1)
            mean = (padded * valid).sum(1) / count
            std = (((padded - mean[:, None]) * valid).square().sum(1) / count).sqrt().clamp_min(1e-12)
            pooled = (values - mean[labels]) / std[labels]
        posterior = fit_gmm(pooled[None], torch.ones(1, n, dtype=torch.bool)).posterior[0]
    elif split == "class":
        padded, valid, cols = pad_groups(values, labels, num_classes)
        fit = fit_gmm(padded, valid)
        posterior = fit.posterior[labels, cols]
        for test in set(guard.split("+")) - {"none", "or-positive"}:
            posterior = torch.where(two_populations(fit, padded, valid, test)[labels], posterior, 1.0)
    else:
        raise UserError(f"unknown candidate split {split!r}")
    mask = posterior > threshold
    if "or-positive" in guard.split("+"):
        mask = mask | (values > 0)
    return Selection(clean_mask=mask, clean_prob=posterior.float(), scores=values.float())


def two_populations(fit: MixtureFit, padded: torch.Tensor, valid: torch.Tensor, rule: str) -> torch.Tensor:
    """(C,) bool: classes whose scores the fitted 2-GMM says hold two populations, by ``rule`` (see
    :func:`candidate_select`)."""
    mu, var, w = fit.means, fit.variances, fit.weights
    if rule == "negmean":
        return ~fit.degenerate & (mu[:, 0] < 0)
    if rule == "ashman":
        return ~fit.degenerate & (math.sqrt(2) * (mu[:, 1] - mu[:, 0]) / (var.sum(1)).sqrt() > 2)
    if rule == "bic":
        n = valid.sum(1).double()
        mean = (padded * valid).sum(1) / n.clamp_min(1)
        var1 = (((padded - mean[:, None]) * valid).square().sum(1) / n.clamp_min(1)) + 1e-6
        ll1 = -0.5 * (math.log(2 * math.pi) + var1.log() + 1) * n
        ll2 = fit.lower_bound * n
        return ~fit.degenerate & (-2 * ll2 + 5 * n.log() < -2 * ll1 + 2 * n.log())
    # dip: the fitted density between the two means falls below both of its sides' maxima
    t = torch.linspace(0, 1, 201, dtype=torch.float64)
    grid = mu[:, :1] + t * (mu[:, 1:] - mu[:, :1])  # (C, 201)
    dens = (w[:, :, None] * torch.exp(-0.5 * (grid[:, None] - mu[:, :, None]).square() / var[:, :, None])
            / var[:, :, None].sqrt()).sum(1)
    left = torch.cummax(dens, 1).values
    right = torch.cummax(dens.flip(1), 1).values.flip(1)
    return ~fit.degenerate & ((dens / torch.minimum(left, right)).amin(1) < 0.99)


def run_detector(det: Detector, features: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor,
                 num_classes: int, previous: torch.Tensor | None,
                 is_clean: torch.Tensor) -> tuple[Selection, torch.Tensor]:
    """One selection by ``det`` from (N, D) features and (N, C) logits; returns it and a (N,) score, higher =
    cleaner, for the AUROC. ``is_clean`` (N,) bool serves the oracles: small-loss's rate and ``oracle``."""
    if det.kind == "oracle":
        return Selection(clean_mask=is_clean.clone(), clean_prob=is_clean.float(), scores=is_clean.float()), \
            is_clean.float()
    keep_ratio = float(is_clean.float().mean())
    if det.kind == "cand":
        ref = previous if det.reference == "previous" else None
        opts = {k: v for k, v in det.options.items() if k != "reference"}
        sel = candidate_select(features, logits, labels, num_classes, ref, **opts)
        return sel, sel.scores
    if det.kind == "fine":
        opts = {k: v for k, v in det.options.items() if k != "reference"}
        if "normalize" in opts:
            opts["normalize"] = bool(opts["normalize"])
        ref = previous if det.reference == "previous" else None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sel = fine_select(features, labels, num_classes, ref_mask=ref, **opts)
        return sel, sel.scores
    losses = F.cross_entropy(logits, labels, reduction="none")
    if det.kind == "small-loss":
        sel = small_loss_select(losses, labels, keep_ratio, per_class=True, num_classes=num_classes)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sel = loss_gmm_select(losses)
    return sel, -losses


def round_metrics(sel: Selection, score: torch.Tensor, is_clean: torch.Tensor, labels: torch.Tensor,
                  num_classes: int, pure: torch.Tensor, previous: torch.Tensor | None) -> dict:
    """Selection quality of one round (see the module docstring); ``pure`` (C,) bool = never-corrupted classes."""
    mask = sel.clean_mask.cpu()
    m = selection_metrics(mask, is_clean, labels=labels, num_classes=num_classes)
    both = bool(is_clean.any()) and bool((~is_clean).any())
    out = {k: m[k] for k in ("precision", "recall", "f1", "selected")}
    out["auroc"] = float(roc_auc_score(is_clean.numpy(), score.double().numpy())) if both else float("nan")
    out["recall_pure"] = float("nan") if m["uncorrupted_recall"] is None else m["uncorrupted_recall"]
    recalls = m["per_class_recall"]
    out["min_recall_pure"] = min((recalls[k] for k in range(num_classes) if pure[k]), default=float("nan"))
    out["per_class_recall"] = " ".join(f"{r:.3f}" for r in recalls)
    for name, part in (("recall_kept", previous), ("recall_dropped", None if previous is None else ~previous)):
        chosen = None if part is None else is_clean & part
        out[name] = float(mask[chosen].float().mean()) if chosen is not None and bool(chosen.any()) else float("nan")
    return out


class BenchLoop:
    """The trainer's sample-selection loop in miniature: SGD with momentum, the schedule's lr per epoch,
    cross-entropy, augmented training batches, eval-mode extraction from un-augmented images, test accuracy."""

    def __init__(self, bundle: DatasetBundle, schedule: Schedule, seed: int) -> None:
        torch.manual_seed(seed)
        self.bundle, self.schedule, self.seed = bundle, schedule, seed
        in_channels = bundle.test[0][0].shape[0]
        self.model = create_model(schedule.arch, bundle.num_classes, in_channels=in_channels)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=schedule.lr, momentum=0.9,
                                         weight_decay=schedule.weight_decay)
        self.loss = build_loss("ce", num_classes=bundle.num_classes, num_samples=len(bundle.train))
        self.epoch = 0
        self.begun: int | None = None  # the epoch begin_epoch last seeded
        self.order: torch.Generator | None = None  # that epoch's sample-order generator

    def fork(self) -> BenchLoop:
        """An independent copy (model, optimizer state, epoch) to continue from here."""
        other = copy.copy(self)
        other.model = copy.deepcopy(self.model)
        other.optimizer = torch.optim.SGD(other.model.parameters(), lr=self.schedule.lr, momentum=0.9,
                                          weight_decay=self.schedule.weight_decay)
        other.optimizer.load_state_dict(copy.deepcopy(self.optimizer.state_dict()))
        return other

    def begin_epoch(self) -> None:
        """Seed the epoch as the trainer does (:func:`engine.data.epoch_generator`): torch's global generator, which
        the transforms' crops and flips draw from, and the sample order's generator."""
        self.order = epoch_generator(self.seed, self.epoch)
        self.begun = self.epoch

    def train_epoch(self, indices: torch.Tensor, augment: bool = True, length: int | None = None) -> None:
        """One epoch on the samples ``indices`` (shuffled by a generator seeded from seed and epoch); with
        ``length``, that many samples: shuffles of ``indices`` repeated (the steps of a full-data epoch).
        Seeds the epoch first unless :meth:`begin_epoch` already did (before a selection round's extraction)."""
        if self.begun != self.epoch:
            self.begin_epoch()
        g = self.order
        repeats = 1 if length is None else -(-length // len(indices))
        order = torch.cat([indices[torch.randperm(len(indices), generator=g)] for _ in range(repeats)])
        order = order[:length].tolist()
        train = self.bundle.train if augment else self.bundle.train.view(self.bundle.test_transform)
        for group in self.optimizer.param_groups:
            group["lr"] = self.schedule.lr * self.schedule.lr_factor(self.epoch)
        self.model.train()
        for x, y, index in DataLoader(train, batch_size=self.schedule.batch_size, sampler=order):
            loss = self.loss(self.model(x), y, index)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        self.epoch += 1

    def outputs(self, augment: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, D) features and (N, C) logits of the training images (un-augmented unless ``augment``)."""
        train = self.bundle.train if augment else self.bundle.train.view(self.bundle.test_transform)
        loader = DataLoader(train, batch_size=4 * self.schedule.batch_size)
        features, logits = extract_features(self.model, loader, torch.arange(len(train)), "cpu")
        return features.cpu(), logits.cpu()

    @torch.no_grad()
    def test_accuracy(self) -> float:
        self.model.eval()
        hits = 0
        for x, y, _ in DataLoader(self.bundle.test, batch_size=4 * self.schedule.batch_size):
            hits += int((self.model(x).argmax(1) == y).sum())
        self.model.train()
        return 100.0 * hits / len(self.bundle.test)


@dataclass
class Cell:
    """One dataset, noise setting and seed; ``data_path`` is what the trainer reads (Fashion-MNIST: the cell's .npz)."""

    dataset: str
    kind: str
    rate: float
    seed: int
    data_path: str

    @property
    def noise(self) -> str:
        return f"{self.kind}{round(100 * self.rate)}"

    @property
    def data_flags(self) -> list[str]:
        """The trainer's data flags; a Fashion-MNIST cell is a user's .npz holding its noisy labels."""
        if self.dataset == "fashion_mnist":
            return ["--dataset", "npz", "--data_path", self.data_path, "--noise_kind", "none"]
        return ["--dataset", self.dataset, "--data_path", self.data_path, "--noise_kind", self.kind, "--noise_rate",
                str(self.rate)]

    def bundle(self, val_size: int) -> DatasetBundle:
        if self.dataset == "fashion_mnist":
            return build_datasets("npz", self.data_path, noise_kind="none", noise_rate=0.0, seed=self.seed,
                                  val_size=val_size)
        return build_datasets(self.dataset, self.data_path, noise_kind=self.kind, noise_rate=self.rate, seed=self.seed,
                              val_size=val_size)


def fashion_mnist_cell(source: str, folder: Path, kind: str, rate: float, seed: int) -> Cell:
    """Write the cell's .npz: a class-balanced subset (``FMNIST_SUBSET`` per class, drawn with seed 0, the same in
    every cell) with ``data_loader.noise``'s labels for (kind, rate, seed) in ``y_train``, the clean ones in
    ``y_train_clean``."""
    path = folder / f"fashion_mnist_{kind}{round(100 * rate)}_s{seed}.npz"
    if not path.exists():
        data = load_fashion_mnist(source)
        rng = np.random.default_rng(0)
        picks = [np.sort(np.concatenate([rng.permutation(np.flatnonzero(y == c))[:n] for c in range(10)]))
                 for y, n in ((data.train_labels, FMNIST_SUBSET[0]), (data.test_labels, FMNIST_SUBSET[1]))]
        clean = data.train_labels[picks[0]]
        noisy = make_noisy_labels(clean, kind, rate, num_classes=10, seed=seed, dataset="fashion_mnist")
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(path, x_train=data.train_images[picks[0], 0], y_train=noisy, y_train_clean=clean,
                 x_test=data.test_images[picks[1], 0], y_test=data.test_labels[picks[1]])
    return Cell("fashion_mnist", kind, rate, seed, str(path))


def round_epochs(schedule: Schedule) -> list[int]:
    return list(range(schedule.warmup, schedule.epochs, schedule.every))


def run_cell(cell: Cell, args: argparse.Namespace, schedule: Schedule, detectors: list[Detector],
             e2e: list[Detector]) -> list[dict]:
    """Every row of one cell: static rounds, bench-loop rounds and final accuracies, trainer runs."""
    bundle = cell.bundle(schedule.val_size)
    labels = torch.as_tensor(bundle.train.noisy_labels)
    is_clean = labels == torch.as_tensor(bundle.train.clean_labels)
    c = bundle.num_classes
    pure = torch.bincount(labels[~is_clean], minlength=c) == 0
    keep_ratio = float(is_clean.float().mean())
    base = {"dataset": cell.dataset, "noise": cell.noise, "seed": cell.seed}
    rows: list[dict] = []
    rounds = round_epochs(schedule)
    everything = torch.arange(len(labels))
    t0 = time.time()

    warm = BenchLoop(bundle, schedule, cell.seed)
    for _ in range(schedule.warmup):
        warm.train_epoch(everything)
    print(f"[{cell.dataset} {cell.noise} seed {cell.seed}] warm-up {schedule.warmup} epochs, "
          f"{time.time() - t0:.0f} s; noise rate {1 - keep_ratio:.3f}; never-corrupted classes "
          f"{pure.nonzero().squeeze(1).tolist()}", flush=True)

    # static: standard training, every detector on the same outputs at each round
    loop = warm.fork()
    previous: dict[str, torch.Tensor | None] = {d.spec: None for d in detectors}
    while detectors and loop.epoch < schedule.epochs:
        if loop.epoch in rounds:
            features, logits = loop.outputs()
            dump(args, cell, "static", "standard", loop.epoch, features, logits, labels, is_clean, None, None)
            for det in detectors:
                sel, score = run_detector(det, features, logits, labels, c, previous[det.spec], is_clean)
                rows.append({**base, "phase": "static", "detector": det.spec, "round": rounds.index(loop.epoch) + 1,
                             "epoch": loop.epoch, **round_metrics(sel, score, is_clean, labels, c, pure,
                                                                  previous[det.spec])})
                previous[det.spec] = sel.clean_mask.cpu() if bool(sel.clean_mask.any()) else previous[det.spec]
        loop.train_epoch(everything)
    if detectors:
        rows.append({**base, "phase": "bench", "detector": "standard", "final_acc": loop.test_accuracy()})
        print(f"  static rounds and standard training done, {time.time() - t0:.0f} s", flush=True)

    for det in e2e:
        loop, mask = warm.fork(), None
        augment_train = det.loop.get("train_aug", True)
        if not augment_train:  # the warm-up too, so that the suspect is changed alone
            loop = BenchLoop(bundle, schedule, cell.seed)
            for _ in range(schedule.warmup):
                loop.train_epoch(everything, augment=False)
        while loop.epoch < schedule.epochs:
            if loop.epoch in rounds and det.kind != "standard":
                loop.begin_epoch()
                features, logits = loop.outputs(augment=det.loop.get("extract_aug", False))
                sel, score = run_detector(det, features, logits, labels, c, mask, is_clean)
                dump(args, cell, "bench", det.spec, loop.epoch, features, logits, labels, is_clean, mask,
                     sel.clean_mask)
                rows.append({**base, "phase": "bench", "detector": det.spec,
                             "round": rounds.index(loop.epoch) + 1, "epoch": loop.epoch,
                             **round_metrics(sel, score, is_clean, labels, c, pure, mask)})
                mask = sel.clean_mask.cpu() if bool(sel.clean_mask.any()) else mask
            loop.train_epoch(everything if mask is None else mask.nonzero().squeeze(1), augment=augment_train,
                             length=len(labels) if det.loop.get("full_epochs") else None)
        rows.append({**base, "phase": "bench", "detector": det.spec, "final_acc": loop.test_accuracy()})
        print(f"  bench loop {det.spec}: final {rows[-1]['final_acc']:.2f}, {time.time() - t0:.0f} s", flush=True)

    for method in args.trainer:
        rows.append({**base, "phase": "trainer", "detector": method, **run_trainer(method, cell, args, schedule)})
        print(f"  trainer {method}: final {rows[-1]['final_acc']:.2f}, {time.time() - t0:.0f} s", flush=True)
    return rows


def dump(args: argparse.Namespace, cell: Cell, phase: str, spec: str, epoch: int, features: torch.Tensor,
         logits: torch.Tensor, labels: torch.Tensor, is_clean: torch.Tensor, previous: torch.Tensor | None,
         selected: torch.Tensor | None) -> None:
    """With ``--dump DIR``, save one round's outputs, labels and masks as ``.npz`` for offline analysis."""
    if args.dump is None:
        return
    name = f"{cell.dataset}_{cell.noise}_s{cell.seed}_{phase}_{spec.replace('/', '-')}_e{epoch:03d}.npz"
    arrays = {"features": features.numpy(), "logits": logits.numpy(), "labels": labels.numpy(),
              "is_clean": is_clean.numpy()}
    arrays.update({k: v.numpy() for k, v in (("previous", previous), ("selected", selected)) if v is not None})
    Path(args.dump).mkdir(parents=True, exist_ok=True)
    np.savez_compressed(Path(args.dump) / name, **arrays)


def trainer_flags(spec: str) -> list[str]:
    """The trainer flags of a ``--trainer`` spec: ``standard``, ``loss-gmm`` or ``fine[:flag=value,...]``."""
    name, _, opts = spec.partition(":")
    if name not in ("standard", "fine", "loss-gmm") or (opts and name != "fine"):
        raise UserError(f"unknown --trainer {spec!r}; use standard, loss-gmm or fine[:flag=value,...]")
    flags = ["--method", "standard" if name == "standard" else "fine"]
    if name == "loss-gmm":
        flags += ["--selector", "loss-gmm"]
    for item in filter(None, opts.split(",")):
        key, _, value = item.partition("=")
        flags += [f"--{key}", value]
    return flags


def run_trainer(spec: str, cell: Cell, args: argparse.Namespace, schedule: Schedule) -> dict:
    """``python -m dynamic_selection.train`` for the ``--trainer`` ``spec`` on the cell; its summary."""
    flags = trainer_flags(spec)
    if not spec.startswith("standard"):
        flags += ["--warmup", str(schedule.warmup), "--every", str(schedule.every)]
    output = Path(args.output) / "trainer" / f"{cell.dataset}_{cell.noise}_s{cell.seed}" / spec.replace("/", "-")
    shutil.rmtree(output, ignore_errors=True)
    cmd = [sys.executable, "-m", "dynamic_selection.train", *cell.data_flags, "--seed", str(cell.seed),
           "--device", "cpu", "--output", str(output), *schedule.flags(), *flags]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, CUDA_VISIBLE_DEVICES=""))
    if proc.returncode:
        raise UserError(f"trainer run failed ({' '.join(cmd[2:])}): {proc.stderr.strip().splitlines()[-1:]}")
    summary = json.loads(next(output.glob("**/summary.json")).read_text())
    out = {"final_acc": summary["last_test_acc"], "best_acc": summary["best_test_acc"]}
    sel = summary.get("selection") or {}
    out.update({k: sel[k] for k in ("precision", "recall", "f1", "selected") if k in sel})
    return out


COLUMNS = ("dataset", "noise", "seed", "phase", "detector", "round", "epoch", "precision", "recall", "f1", "auroc",
           "selected", "recall_pure", "min_recall_pure", "recall_kept", "recall_dropped", "final_acc", "best_acc",
           "per_class_recall")


def _mean(values: list) -> float:
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return statistics.fmean(values) if values else float("nan")


def summarize(rows: list[dict]) -> list[dict]:
    """One line per (dataset, noise, phase, detector): the figures of the first round (static: the warm-up's
    outputs, the same for every detector) or of the last round (bench loop, trainer) and the final accuracy,
    averaged over seeds (``n`` seeds, ``acc_sd`` the seeds' standard deviation)."""
    last: dict[tuple, dict] = {}
    for row in rows:
        if row.get("round") is not None:
            key = (row["dataset"], row["noise"], row["phase"], row["detector"], row["seed"])
            later = key not in last or row["round"] > last[key]["round"]
            if (row["phase"] == "static" and row["round"] == 1) or (row["phase"] != "static" and later):
                last[key] = row
    finals = {(r["dataset"], r["noise"], r["phase"], r["detector"], r["seed"]): r for r in rows
              if r.get("final_acc") is not None}
    groups: dict[tuple, list[tuple]] = defaultdict(list)
    for key in list(last) + [k for k in finals if k not in last]:
        groups[key[:4]].append(key)
    out = []
    for group, keys in groups.items():
        line = dict(zip(("dataset", "noise", "phase", "detector"), group))
        for col in ("precision", "recall", "f1", "auroc", "recall_pure", "min_recall_pure", "selected"):
            line[col] = _mean([last[k].get(col) for k in keys if k in last])
        accs = [finals[k]["final_acc"] for k in keys if k in finals]
        line["final_acc"] = _mean(accs)
        line["acc_sd"] = statistics.stdev(accs) if len(accs) > 1 else float("nan")
        line["n"] = len(set(k[4] for k in keys))
        out.append(line)
    return out


def _fmt(value: float, digits: int = 3) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def target_notes(lines: list[dict]) -> dict[tuple, str]:
    """The issue's targets checked beside each figure they concern (key: dataset, noise, phase, detector)."""
    notes = {}
    acc = {(line["dataset"], line["noise"], line["phase"], line["detector"]): line["final_acc"] for line in lines}
    for line in lines:
        key = (line["dataset"], line["noise"], line["phase"], line["detector"])
        marks = []
        std = acc.get((line["dataset"], line["noise"], line["phase"], "standard"))
        if line["detector"] not in ("standard", "loss-gmm") and std is not None and not math.isnan(line["final_acc"]):
            marks.append(f"acc {'>=' if line['final_acc'] >= std else '<'} standard {std:.1f}")
        selector = line["detector"].startswith(("fine", "cand"))
        if line["noise"] == "sym50" and selector and not math.isnan(line["recall"]):
            ok = line["recall"] >= 0.85 and line["precision"] >= 0.90
            marks.append(f"R>=.85@P>=.90 {'met' if ok else 'MISSED'}")
        asym = line["noise"].startswith("asym") or not math.isnan(line["recall_pure"])
        if asym and selector:
            if not math.isnan(line["recall_pure"]):
                marks.append(f"pure R>=.95 {'met' if line['recall_pure'] >= 0.95 else 'MISSED'}")
            gmm = acc.get((line["dataset"], line["noise"], line["phase"], "loss-gmm"))
            if gmm is not None and not math.isnan(line["final_acc"]):
                marks.append(f"acc {'>=' if line['final_acc'] >= gmm else '<'} loss-gmm {gmm:.1f}")
        notes[key] = "; ".join(marks)
    return notes


def print_table(lines: list[dict]) -> None:
    print(f"\n{TARGETS}")
    print("static: every detector on the warm-up's outputs (round 1); bench: the last round of each detector's own "
          "selection loop; trainer: dynamic_selection.train's last round; mean over n seeds")
    header = (f"{'dataset':13} {'noise':7} {'phase':7} {'detector':44} {'n':>2} {'P':>6} {'R':>6} {'F1':>6} "
              f"{'AUROC':>6} {'R_pure':>6} {'minR_p':>6} {'sel':>6} {'final':>6} {'sd':>5}  targets")
    print(header)
    print("-" * len(header))
    notes = target_notes(lines)
    order = {"static": 0, "bench": 1, "trainer": 2}
    for line in sorted(lines, key=lambda line: (line["dataset"], line["noise"], order[line["phase"]])):
        key = (line["dataset"], line["noise"], line["phase"], line["detector"])
        print(f"{line['dataset']:13} {line['noise']:7} {line['phase']:7} {line['detector']:44} {line['n']:>2} "
              f"{_fmt(line['precision']):>6} {_fmt(line['recall']):>6} {_fmt(line['f1']):>6} {_fmt(line['auroc']):>6} "
              f"{_fmt(line['recall_pure']):>6} {_fmt(line['min_recall_pure']):>6} {_fmt(line['selected'], 0):>6} "
              f"{_fmt(line['final_acc'], 2):>6} {_fmt(line['acc_sd'], 2):>5}  {notes[key]}")


def write_csv(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in COLUMNS})


def parse_noise(text: str) -> tuple[str, float]:
    kind, _, rate = text.partition(":")
    try:
        return kind, float(rate)
    except ValueError:
        raise UserError(f"--noise {text!r}: use kind:rate, e.g. sym:0.5 or asym:0.4") from None


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.detection", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=str, default="digits", choices=tuple(SCHEDULES),
                        help="data set: digits (scikit-learn's), fashion_mnist (a 5,000-image subset as a user's "
                             ".npz, see above)")
    parser.add_argument("--data_path", type=str, default=None,
                        help="digits: folder the noisy labels are saved under (default: a temporary folder); "
                             "fashion_mnist: the folder of its idx files (default /usr/share/datasets/fashion-mnist)")
    parser.add_argument("--noise", type=str, nargs="+", default=["sym:0.2", "sym:0.5", "sym:0.8", "asym:0.4"],
                        help="noise settings kind:rate")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="seeds (noise, split, network)")
    parser.add_argument("--detectors", type=str, nargs="*",
                        default=[*FINE_GRID, "fine:score=margin", "fine:score=margin,reference=class", "loss-gmm",
                                 "small-loss", *CANDIDATES],
                        help="detectors compared on the same outputs at every round (default: the 12 FINE "
                             "variants reference x score x fit, the margin option, loss-gmm, small-loss and the "
                             "candidates of issue #16; none: skip the static phase and standard training)")
    parser.add_argument("--e2e", type=str, nargs="*", default=["fine", "fine:score=margin", "loss-gmm"],
                        help="detectors run through the bench loop to the final accuracy")
    parser.add_argument("--trainer", type=str, nargs="*",
                        default=["standard", "fine", "fine:score=abs", "loss-gmm"],
                        help="methods run through python -m dynamic_selection.train: standard, loss-gmm, fine "
                             "(the project's defaults), fine:flag=value,... (extra trainer flags); none: skip")
    parser.add_argument("--epochs", type=int, default=None, help="override the schedule's epochs (and warm-up "
                                                                  "to at most half of them)")
    parser.add_argument("--output", type=str, default=None,
                        help="folder for the trainer's runs and the CSV (default: a temporary folder)")
    parser.add_argument("--csv", type=str, default=None, help="CSV path (default: <output>/detection.csv)")
    parser.add_argument("--dump", type=str, default=None,
                        help="save every round's features, logits, labels and masks as .npz files in this folder")
    parser.add_argument("--quick", action="store_true",
                        help="digits, sym:0.5 and asym:0.4, seed 1, a short detector list, bench loop: fine and "
                             "fine:score=margin, trainer: fine")
    return parser


def main(argv: list[str] | None = None) -> list[dict]:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--peers" in argv:  # FINE against cleanlab and k-NN on frozen embeddings: bench/peers.py
        from bench import peers
        return peers.main([a for a in argv if a != "--peers"])
    args = get_args_parser().parse_args(argv)
    if args.quick:
        args.dataset, args.noise, args.seeds = "digits", ["sym:0.5", "asym:0.4"], [1]
        args.detectors, args.e2e, args.trainer = list(QUICK_DETECTORS), ["fine", "fine:score=margin"], ["fine"]
    schedule = SCHEDULES[args.dataset]
    if args.epochs is not None:
        schedule = Schedule(**{**schedule.__dict__, "epochs": args.epochs,
                               "warmup": min(schedule.warmup, args.epochs // 2),
                               "every": min(schedule.every, max(args.epochs // 4, 1)),
                               "milestones": tuple(m for m in schedule.milestones if m < args.epochs)})
    scratch = None
    if args.data_path is None or args.output is None:
        scratch = tempfile.mkdtemp(prefix="bench_detection_")
    args.output = args.output or scratch
    detectors = [parse_detector(s) for s in args.detectors]
    e2e = [parse_detector(s) for s in args.e2e]
    for spec in args.trainer:
        trainer_flags(spec)
    settings = [(*parse_noise(n), s) for n in args.noise for s in args.seeds]
    if args.dataset == "fashion_mnist":
        source = args.data_path or "/usr/share/datasets/fashion-mnist"
        cells = [fashion_mnist_cell(source, Path(args.output) / "data", *setting) for setting in settings]
    else:
        cells = [Cell(args.dataset, *setting, args.data_path or scratch) for setting in settings]
    print(f"bench.detection: {args.dataset}, {len(cells)} cells, schedule {schedule}; output {args.output}",
          flush=True)
    csv_path = Path(args.csv) if args.csv else Path(args.output) / "detection.csv"
    rows: list[dict] = []
    for cell in cells:
        rows += run_cell(cell, args, schedule, detectors, e2e)
        write_csv(rows, csv_path)
    lines = summarize(rows)
    print_table(lines)
    print(f"\nCSV: {csv_path}")
    return lines


if __name__ == "__main__":
    run_cli(main)
