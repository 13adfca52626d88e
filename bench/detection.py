"""Selection-quality benchmark: which detector finds the clean samples, on real data and real training runs.

    python -m bench.detection --quick                    # digits, sym 50% and asym 40%, one seed: a few minutes
    python -m bench.detection --dataset digits --noise sym:0.2 sym:0.5 sym:0.8 asym:0.4 --seeds 1 2 3
    python -m bench.detection --dataset fashion_mnist --data_path /usr/share/datasets/fashion-mnist --seeds 1
    python -m bench.detection --peers ...               # FINE vs cleanlab and k-NN on embeddings (bench/peers.py)

A *cell* is one dataset, noise setting and seed; its data come from ``data_loader.build_datasets`` (noisy labels
saved under ``--data_path``, so every detector and every run see the same labels). Fashion-MNIST is tried as a new
user would (issue #16): a class-balanced subset of 5,000 training and 3,000 test images, its noisy labels made by
``data_loader.noise`` (the Fashion-MNIST asymmetric map), written as a user's ``.npz`` (``y_train`` noisy,
``y_train_clean`` clean) and read with ``--dataset npz --noise_kind none``. Every network is trained by the real
trainer, ``python -m dynamic_selection.train``, with the bench's schedule flags. For each cell:

1. **standard**: one ``--method standard`` run to the last epoch, keeping its checkpoint before every selection round
   (epoch ``warmup``, ``warmup + every``, ...; ``--save_epochs``). It is the shared warm-up of every fork and the
   standard-training baseline.
2. **static**: at every round the penultimate features and logits of the un-augmented training images are extracted
   once from the standard run's checkpoint (``engine.detect.network_outputs``) and every ``--detectors`` entry selects
   from the same outputs. Detectors whose reference set is the previous selection keep their own chain of
   selections (and selector state) from round to round.
3. **trainer**: each ``--trainer`` entry is ``--method fine`` with that selector, started ``--init_from`` the
   standard run's checkpoint at the end of the warm-up, to the last epoch. Reported: its rounds' selection quality
   (``selection/round_*.npz``) and its final and best test accuracy (``summary.json``).

Per detector and round: precision, recall, F1 (positives = clean samples), AUROC of the detector's score, selected
count, the recall of the never-corrupted classes (noisy classes holding no wrong label; under asymmetric noise) and
every class's clean recall; for the trainer's rounds also the recall among clean samples the previous round kept and
among those it dropped (are dropped clean samples ever re-admitted?). The table shows the last round, averaged over
seeds, with the issue's targets beside the figures; ``--csv`` gets one row per detector and round of every cell.

Detector specs: ``<selector>[:<option>=<value>,...]`` for every selector of ``fine.selection.REGISTRY`` with its
options (e.g. ``fine:score=margin,fit=kmeans``) plus ``reference=previous|class`` (default previous); ``small-loss``
without ``forget_rate`` drops the realised noise rate of every class (an oracle rate); ``oracle`` (the clean samples:
the ceiling of selection) in the static phase. A ``--trainer`` spec is a selector spec without ``reference``; its
options become the trainer's flags (``fine:score=abs`` adds ``--score abs``).
"""
from __future__ import annotations

import argparse
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
from sklearn.metrics import roc_auc_score

from data_loader.fashion_mnist import load_fashion_mnist
from data_loader.noise import make_noisy_labels
from engine.detect import NetworkOutputs, network_outputs
from fine.errors import UserError, run_cli
from fine.selection import REGISTRY, Selection, SelectorConfig, select_samples, selection_metrics

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
FINE_GRID = tuple(f"fine:reference={r},score={s},fit={f}" for r in ("previous", "class") for s in ("abs", "squared")
                  for f in ("gmm", "kmeans", "bmm"))
QUICK_TRAINER = ("fine:score=abs", "fine")  # on digits the recipe's FINE scores by the margin


@dataclass
class Detector:
    """A parsed detector spec: a registered selector (or ``oracle``), its options and its reference set."""

    spec: str
    name: str
    options: dict = field(default_factory=dict)
    reference: str = "previous"


def parse_detector(spec: str, *, static: bool = True) -> Detector:
    """``name[:option=value,...]`` -> Detector; UserError on an unknown selector or option. ``reference`` and
    ``oracle`` belong to the static phase only."""
    name, _, opts = spec.partition(":")
    names = (*REGISTRY, "oracle") if static else tuple(REGISTRY)
    if name not in names:
        raise UserError(f"unknown detector {name!r} in {spec!r}; use one of {', '.join(names)}")
    types = {o.name: o.type for o in REGISTRY[name].options} if name in REGISTRY else {}
    if static:
        types["reference"] = str
    det = Detector(spec, name)
    for item in filter(None, opts.split(",")):
        key, _, value = item.partition("=")
        if key not in types:
            raise UserError(f"unknown option {key!r} of {name} in {spec!r}; it takes {', '.join(types) or 'none'}")
        if key == "reference":
            if value not in ("previous", "class"):
                raise UserError(f"reference={value} in {spec!r}; use reference=previous or reference=class")
            det.reference = value
        else:
            det.options[key] = types[key](value)
    return det


def run_detector(det: Detector, out: NetworkOutputs, previous: torch.Tensor | None, state: dict,
                 is_clean: torch.Tensor) -> tuple[Selection, torch.Tensor]:
    """One selection by ``det`` from a checkpoint's outputs; returns it and a (N,) score, higher = cleaner, for the
    AUROC. ``is_clean`` (N,) bool serves the oracles: small-loss's default rate and ``oracle``."""
    if det.name == "oracle":
        return Selection(clean_mask=is_clean.clone(), clean_prob=is_clean.float(), scores=is_clean.float()), \
            is_clean.float()
    options = dict(det.options)
    if det.name == "small-loss":
        options.setdefault("forget_rate", float((~is_clean).float().mean()))
    spec = REGISTRY[det.name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sel = select_samples(SelectorConfig(det.name, options), out.features.cpu(), out.logits.cpu(), out.noisy,
                             out.num_classes, ref_mask=previous if det.reference == "previous" else None, state=state)
    return sel, sel.scores if spec.higher_is_cleaner else -sel.scores


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
             forks: list[Detector]) -> list[dict]:
    """Every row of one cell: the standard run, the static rounds on its checkpoints, the forked trainer runs."""
    base = {"dataset": cell.dataset, "noise": cell.noise, "seed": cell.seed}
    rounds = round_epochs(schedule)
    t0 = time.time()
    warm = run_trainer("standard", cell, args, schedule, ["--method", "standard", "--save_epochs",
                                                           *(str(r - 1) for r in rounds)])
    rows = [{**base, "phase": "trainer", "detector": "standard", **warm.accuracy}]
    run_args = argparse.Namespace(**json.loads((warm.run_dir / "args.json").read_text())["args"])
    first = network_outputs(run_args, warm.run_dir / f"epoch_{rounds[0] - 1:03d}.pt", torch.device("cpu"))
    is_clean = first.noisy == torch.as_tensor(first.clean)
    pure = torch.bincount(first.noisy[~is_clean], minlength=first.num_classes) == 0
    print(f"[{cell.dataset} {cell.noise} seed {cell.seed}] standard run {time.time() - t0:.0f} s, final "
          f"{warm.accuracy['final_acc']:.2f}; noise rate {float((~is_clean).float().mean()):.3f}; never-corrupted "
          f"classes {pure.nonzero().squeeze(1).tolist()}", flush=True)

    # static: every detector on the same outputs of the standard run at each round
    previous: dict[str, torch.Tensor | None] = {d.spec: None for d in detectors}
    states = {d.spec: REGISTRY[d.name].init_state() if d.name in REGISTRY else {} for d in detectors}
    for number, epoch in enumerate(rounds if detectors else [], 1):
        out = first if number == 1 else network_outputs(run_args, warm.run_dir / f"epoch_{epoch - 1:03d}.pt",
                                                        torch.device("cpu"))
        dump(args, cell, epoch, out, is_clean)
        for det in detectors:
            sel, score = run_detector(det, out, previous[det.spec], states[det.spec], is_clean)
            rows.append({**base, "phase": "static", "detector": det.spec, "round": number, "epoch": epoch,
                         **round_metrics(sel, score, is_clean, out.noisy, out.num_classes, pure, previous[det.spec])})
            previous[det.spec] = sel.clean_mask.cpu() if bool(sel.clean_mask.any()) else previous[det.spec]
    print(f"  static rounds done, {time.time() - t0:.0f} s", flush=True)

    start = ["--init_from", str(warm.run_dir / f"epoch_{schedule.warmup - 1:03d}.pt"), "--warmup",
             str(schedule.warmup), "--every", str(schedule.every)]
    for det in forks:
        run = run_trainer(det.spec, cell, args, schedule, [*trainer_flags(det), *start])
        rows += fork_rounds(run.run_dir, det, base, is_clean, first, pure, rounds)
        rows.append({**base, "phase": "trainer", "detector": det.spec, **run.accuracy})
        print(f"  trainer {det.spec}: final {run.accuracy['final_acc']:.2f}, {time.time() - t0:.0f} s", flush=True)
    return rows


def fork_rounds(run_dir: Path, det: Detector, base: dict, is_clean: torch.Tensor, out: NetworkOutputs,
                pure: torch.Tensor, rounds: list[int]) -> list[dict]:
    """The selection quality of a trainer run's rounds, from its ``selection/round_*.npz``."""
    rows, previous = [], None
    higher = REGISTRY[det.name].higher_is_cleaner
    for number, path in enumerate(sorted((run_dir / "selection").glob("round_*.npz")), 1):
        saved = np.load(path)
        sel = Selection(clean_mask=torch.from_numpy(saved["mask"]), clean_prob=torch.from_numpy(saved["clean_prob"]),
                        scores=torch.from_numpy(saved["scores"]))
        score = sel.scores if higher else -sel.scores
        rows.append({**base, "phase": "trainer", "detector": det.spec, "round": number, "epoch": rounds[number - 1],
                     **round_metrics(sel, score, is_clean, out.noisy, out.num_classes, pure, previous)})
        previous = sel.clean_mask if bool(sel.clean_mask.any()) else previous
    return rows


def dump(args: argparse.Namespace, cell: Cell, epoch: int, out: NetworkOutputs, is_clean: torch.Tensor) -> None:
    """With ``--dump DIR``, save one round's outputs of the standard run and the labels as ``.npz``."""
    if args.dump is None:
        return
    name = f"{cell.dataset}_{cell.noise}_s{cell.seed}_standard_e{epoch:03d}.npz"
    Path(args.dump).mkdir(parents=True, exist_ok=True)
    np.savez_compressed(Path(args.dump) / name, features=out.features.cpu().numpy(), logits=out.logits.cpu().numpy(),
                        labels=out.noisy.numpy(), is_clean=is_clean.numpy())


def trainer_flags(det: Detector) -> list[str]:
    """The trainer flags of a ``--trainer`` spec: ``--method fine --selector NAME`` and its options as flags."""
    flags = ["--method", "fine", "--selector", det.name]
    for key, value in det.options.items():
        flags += [f"--{key}", str(value)]
    return flags


@dataclass
class TrainerRun:
    """A finished ``dynamic_selection.train`` run: its directory and final / best test accuracy."""

    run_dir: Path
    accuracy: dict


def run_trainer(name: str, cell: Cell, args: argparse.Namespace, schedule: Schedule, flags: list[str]) -> TrainerRun:
    """``python -m dynamic_selection.train`` on the cell with the schedule's and the given flags."""
    output = Path(args.output) / "trainer" / f"{cell.dataset}_{cell.noise}_s{cell.seed}" / name.replace("/", "-")
    shutil.rmtree(output, ignore_errors=True)
    cmd = [sys.executable, "-m", "dynamic_selection.train", *cell.data_flags, "--seed", str(cell.seed),
           "--device", "cpu", "--output", str(output), *schedule.flags(), *flags]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, CUDA_VISIBLE_DEVICES=""))
    if proc.returncode:
        raise UserError(f"trainer run failed ({' '.join(cmd[2:])}): {proc.stderr.strip().splitlines()[-1:]}")
    summary_path = next(output.glob("**/summary.json"))
    summary = json.loads(summary_path.read_text())
    accuracy = {"final_acc": summary["last_test_acc"], "best_acc": summary["best_test_acc"]}
    return TrainerRun(summary_path.parent, accuracy)


COLUMNS = ("dataset", "noise", "seed", "phase", "detector", "round", "epoch", "precision", "recall", "f1", "auroc",
           "selected", "recall_pure", "min_recall_pure", "recall_kept", "recall_dropped", "final_acc", "best_acc",
           "per_class_recall")


def _mean(values: list) -> float:
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return statistics.fmean(values) if values else float("nan")


def summarize(rows: list[dict]) -> list[dict]:
    """One line per (dataset, noise, phase, detector): the figures of the first round (static: the warm-up's
    outputs, the same for every detector) or of the last round (trainer) and the final accuracy,
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
        selector = line["detector"].startswith("fine")
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
    print("static: every detector on the standard run's outputs at the first round; trainer: the standard run, and "
          "each selector's dynamic_selection.train run forked from its warm-up at the last round; mean over n seeds")
    header = (f"{'dataset':13} {'noise':7} {'phase':7} {'detector':44} {'n':>2} {'P':>6} {'R':>6} {'F1':>6} "
              f"{'AUROC':>6} {'R_pure':>6} {'minR_p':>6} {'sel':>6} {'final':>6} {'sd':>5}  targets")
    print(header)
    print("-" * len(header))
    notes = target_notes(lines)
    order = {"static": 0, "trainer": 1}
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
                                 "small-loss"],
                        help="detectors compared on the standard run's outputs at every round (default: the 12 FINE "
                             "variants reference x score x fit, the margin option, loss-gmm, small-loss)")
    parser.add_argument("--trainer", type=str, nargs="*", default=["fine", "fine:score=abs", "loss-gmm"],
                        help="selectors run through python -m dynamic_selection.train --method fine, each started "
                             "from the standard run's warm-up: <selector>[:flag=value,...] (the project's defaults "
                             "and these flags); none: only the standard run")
    parser.add_argument("--epochs", type=int, default=None, help="override the schedule's epochs (and warm-up "
                                                                  "to at most half of them)")
    parser.add_argument("--output", type=str, default=None,
                        help="folder for the trainer's runs and the CSV (default: a temporary folder)")
    parser.add_argument("--csv", type=str, default=None, help="CSV path (default: <output>/detection.csv)")
    parser.add_argument("--dump", type=str, default=None,
                        help="save the standard run's features, logits and labels at every round as .npz files in "
                             "this folder")
    parser.add_argument("--quick", action="store_true",
                        help="digits, sym:0.5 and asym:0.4, seed 1, a short detector list, trainer: fine with the "
                             "abs and the margin score")
    return parser


def main(argv: list[str] | None = None) -> list[dict]:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--peers" in argv:  # FINE against cleanlab and k-NN on frozen embeddings: bench/peers.py
        from bench import peers
        return peers.main([a for a in argv if a != "--peers"])
    args = get_args_parser().parse_args(argv)
    if args.quick:
        args.dataset, args.noise, args.seeds = "digits", ["sym:0.5", "asym:0.4"], [1]
        args.detectors, args.trainer = list(QUICK_DETECTORS), list(QUICK_TRAINER)
    schedule = SCHEDULES[args.dataset]
    if args.epochs is not None:
        schedule = Schedule(**{**schedule.__dict__, "epochs": args.epochs,
                               "warmup": min(schedule.warmup, args.epochs // 2),
                               "every": min(schedule.every, max(args.epochs // 4, 1)),
                               "milestones": tuple(m for m in schedule.milestones if m < args.epochs)})
    if schedule.warmup < 1:
        raise UserError(f"--epochs {args.epochs} leaves no warm-up epoch to fork the trainer runs from; pass 2 or more")
    scratch = None
    if args.data_path is None or args.output is None:
        scratch = tempfile.mkdtemp(prefix="bench_detection_")
    args.output = args.output or scratch
    detectors = [parse_detector(s) for s in args.detectors]
    forks = [parse_detector(s, static=False) for s in args.trainer]
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
        rows += run_cell(cell, args, schedule, detectors, forks)
        write_csv(rows, csv_path)
    lines = summarize(rows)
    print_table(lines)
    print(f"\nCSV: {csv_path}")
    return lines


if __name__ == "__main__":
    run_cli(main)
