"""FINE against its peers on identical features: cleanlab, SimiFeat's k-NN votes, the loss mixture and small loss.

    python -m bench.detection --peers                      # the same as python -m bench.peers
    python -m bench.peers --cells "cifar10 human:worst" --seeds 1 2 3 --csv peers.csv
    python -m bench.peers --features warmup --seeds 1 2 3 # on the trainer's warm-up network: ~4 minutes on 2 cores
    pip install -r bench/requirements.txt                  # cleanlab, for the cleanlab rows (skipped without it)

Cells come from the embedding files of ``bench.embeddings`` (``--embeddings``; build them first): a frozen encoder
trained with clean labels on disjoint images, a class-balanced detection set of ``--size`` samples and a fixed clean
test set of ``--test_size`` (``bench.embeddings.make_cell``). Detectors (``DETECTORS``), all on the same features
and noisy labels; *trainings* counts the classifier fits each needs:

- ``<selector>:<option>=<value>,...``: any selector of the registry (``fine.selection.REGISTRY``: ``fine``, ``knn``,
  ``loss-gmm``, ``small-loss``, ...) with those of its options (the trainers' flag names, e.g.
  ``fine:score=lda,lda_refine=0`` or ``knn:knn_k=20``), the rest at their defaults. Selectors that need features get
  the cell's (0 trainings); those that need logits get the log-probabilities of one logistic regression fitted on all
  noisy labels (1 training, shared); small-loss without ``forget_rate`` drops each class's realised noisy fraction (an
  oracle rate);
- ``cleanlab`` (the one peer outside the registry): ``cleanlab.filter.find_label_issues`` on out-of-sample
  probabilities of a 5-fold cross-validated logistic regression (standardised features), as cleanlab recommends for
  embeddings; ranked by ``cleanlab.rank.get_label_quality_scores`` (5 trainings).

Per detector: AUROC of its score for the wrong labels, precision, recall and F1 of the flagged samples as a
detection of the wrong labels, seconds. End to end (``--e2e``): test accuracy of a logistic regression on the noisy
labels, of cleanlab's ``CleanLearning`` around it, of a logistic regression on each listed detector's selection, and
(``--trainer``) of ``python -m dynamic_selection.train --dataset npz`` (standard and FINE) on the cell written as a
user's ``.npz``. The issue's targets are printed beside the figures.

Feature sources (``--features``; ``both`` runs both, every row and CSV line names its ``source``):

- ``frozen`` (default): the embedding files above;
- ``warmup``: the trainer's own warm-up network. ``python -m dynamic_selection.train --method standard`` trains on the
  cell's noisy labels for the warm-up epochs only (digits: the trainer's digits recipe of ``bench.detection``, 10
  epochs; ``cifar10``: ``bench.real_cifar``'s reduced class-balanced real CIFAR-10 with its CIFAR-10N label subset,
  50 images per class, trained as that benchmark's first scale did, with crops and flips, 20 epochs) and
  ``engine.detect.network_outputs`` reads the penultimate features and logits of its training samples from the last
  warm-up checkpoint. Every detector runs on those features; selectors that need logits get the network's (0
  trainings beyond the warm-up); ``cleanlab`` the 5-fold cross-validated logistic regression on the network's
  features as above, and ``cleanlab:in-sample`` the network's own softmax (in-sample probabilities of the network
  that fitted those labels). No end-to-end rows (no test features).
  Cells: ``digits sym:0.5``-style synthetic noise on digits or CIFAR-10, ``cifar10 human:<worst|aggre|random1>``.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import shutil
import warnings
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from bench.embeddings import Cell, make_cell
from fine.errors import UserError, run_cli
from fine.selection import REGISTRY, SelectorConfig, get_selector, select_samples

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CELLS = [f"{d} {n}" for d in ("digits", "fashion_mnist", "cifar10")
                 for n in ("sym:0.5", "asym:0.4", "pairflip:0.3")] + \
                [f"cifar10 human:{h}" for h in ("aggre", "random1", "worst")]
DEFAULT_DETECTORS = ["fine:score=abs", "fine:score=margin", "fine:score=lda", "fine:score=lda,lda_refine=0",
                     "fine:score=lda,lda_decision=mixture", "cleanlab", "knn", "loss-gmm", "small-loss"]
HUMAN_CELLS = "human:"
WARMUP_CELLS = ["digits sym:0.5", "digits asym:0.4", "cifar10 human:worst", "cifar10 human:aggre"]
WARMUP_ONLY_DETECTORS = ["cleanlab:in-sample"]
# the detector the targets are checked for: engine.detect's default on given features
TARGET_DETECTOR = "fine:score=lda"


def logistic_regression(seed: int = 0):
    """The peers' classifier: standardised features, multinomial logistic regression (scikit-learn defaults)."""
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=seed))


@dataclass
class WarmupCell(Cell):
    """A cell whose features and logits are a warm-up network's outputs on its own training samples."""

    logits: np.ndarray | None = None  # (n, C) the network's logits
    epochs: int = 0  # warm-up epochs the network was trained for
    train_seconds: float = 0.0


def _cleanlab(cell: Cell, in_sample: bool = False) -> dict:
    """cleanlab on cross-validated logistic-regression probabilities, or (``in_sample``) on the softmax of the
    cell's logits (a warm-up network's own outputs; on a frozen cell the in-sample logistic regression's)."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores
    if in_sample:
        probs = torch.softmax(_logits(cell).double(), dim=1).numpy()
    else:
        folds = StratifiedKFold(5, shuffle=True, random_state=cell.seed)
        probs = cross_val_predict(logistic_regression(cell.seed), cell.features, cell.noisy, cv=folds,
                                  method="predict_proba")
    issues = find_label_issues(cell.noisy, probs, return_indices_ranked_by="self_confidence")
    clean = np.ones(len(cell.noisy), dtype=bool)
    clean[issues] = False
    trainings = (0 if isinstance(cell, WarmupCell) else 1) if in_sample else 5
    return {"clean": clean, "score": get_label_quality_scores(cell.noisy, probs), "trainings": trainings}


_LOGITS: dict[int, torch.Tensor] = {}  # per cell (by id): the one training the logit selectors share


def _logits(cell: Cell) -> torch.Tensor:
    """(N, C) log-probabilities of one logistic regression fitted on all noisy labels (their cross-entropy against
    the noisy labels is the per-sample loss); of a warm-up cell: the log-softmax of its network's logits."""
    if isinstance(cell, WarmupCell):
        return torch.log_softmax(torch.from_numpy(cell.logits).double(), dim=1).float()
    if id(cell) not in _LOGITS:
        _LOGITS.clear()
        probs = logistic_regression(cell.seed).fit(cell.features, cell.noisy).predict_proba(cell.features)
        _LOGITS[id(cell)] = torch.from_numpy(np.log(np.clip(probs, 1e-12, None)))
    return _LOGITS[id(cell)]


def _registered(name: str, cell: Cell, options: dict) -> dict:
    """A registered selector on the cell's features or logistic-regression logits."""
    spec = get_selector(name)
    if name == "small-loss" and "forget_rate" not in options:
        options = dict(options, forget_rate=float((~cell.is_clean).mean()))
    try:
        config = SelectorConfig(name, options)
    except ValueError as err:
        raise UserError(f"detector {name}:{options}: {err}") from None
    logits = _logits(cell) if "logits" in spec.needs else None
    sel = select_samples(config, torch.from_numpy(cell.features), logits, torch.from_numpy(cell.noisy),
                         cell.num_classes)
    score = sel.scores.numpy() if spec.higher_is_cleaner else -sel.scores.numpy()
    trainings = int(logits is not None and not isinstance(cell, WarmupCell))
    return {"clean": sel.clean_mask.numpy(), "score": score, "trainings": trainings}


def parse_options(text: str) -> dict:
    """``a=1,b=x`` -> ``{"a": 1, "b": "x"}`` (ints, floats and booleans converted)."""
    out = {}
    for item in filter(None, text.split(",")):
        key, value = item.split("=")
        for cast in (int, float):
            try:
                value = cast(value)
                break
            except ValueError:
                pass
        out[key] = {"True": True, "False": False}.get(value, value) if isinstance(value, str) else value
    return out


def run_detector(spec: str, cell: Cell) -> dict:
    """Run one detector spec on a cell; returns its clean mask, score (higher = cleaner), trainings and seconds."""
    start = time.perf_counter()
    name, _, options = spec.partition(":")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name == "cleanlab" and options in ("", "in-sample"):
            out = _cleanlab(cell, in_sample=options == "in-sample")
        elif name in REGISTRY:
            out = _registered(name, cell, parse_options(options))
        else:
            raise UserError(f"unknown detector {spec!r}; choose cleanlab, cleanlab:in-sample or one of "
                            f"{', '.join(REGISTRY)}")
    out["seconds"] = time.perf_counter() - start
    return out


def detection_metrics(clean: np.ndarray, score: np.ndarray, is_clean: np.ndarray) -> dict:
    """AUROC of ``score`` (higher = cleaner) for the wrong labels; precision, recall, F1 of the flagged samples
    (``~clean``) as a detection of the wrong labels."""
    wrong, flagged = ~is_clean, ~clean
    tp = int((wrong & flagged).sum())
    precision = tp / max(int(flagged.sum()), 1)
    recall = tp / max(int(wrong.sum()), 1)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    auroc = float(roc_auc_score(wrong, -score)) if 0 < wrong.sum() < len(wrong) else float("nan")
    return {"auroc": auroc, "f1": f1, "precision": precision, "recall": recall, "flagged": int(flagged.sum())}


def e2e_logistic(cell: Cell, selections: dict[str, np.ndarray], with_cleanlab: bool) -> dict:
    """Test accuracy of logistic regression on all noisy labels, on each detector's selection, and of CleanLearning."""
    out = {}
    model = logistic_regression(cell.seed).fit(cell.features, cell.noisy)
    out["logreg"] = float(model.score(cell.test_features, cell.test_labels))
    for spec, clean in selections.items():
        model = logistic_regression(cell.seed).fit(cell.features[clean], cell.noisy[clean])
        out[f"logreg on {spec}"] = float(model.score(cell.test_features, cell.test_labels))
    if with_cleanlab:
        from cleanlab.classification import CleanLearning
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            learner = CleanLearning(logistic_regression(cell.seed), seed=cell.seed, cv_n_folds=5)
            learner.fit(cell.features, cell.noisy)
        out["CleanLearning"] = float(learner.score(cell.test_features, cell.test_labels))
    return out


def write_npz(cell: Cell, path: Path) -> None:
    """The cell as a user's ``.npz`` table (``data_loader.user_data``)."""
    np.savez(path, x_train=cell.features, y_train=cell.noisy, y_train_clean=cell.clean, x_test=cell.test_features,
             y_test=cell.test_labels, kind="table")


def run_trainer(cell: Cell, method: str, extra: list[str], workdir: Path) -> float:
    """Final test accuracy of ``python -m dynamic_selection.train --dataset npz`` on the cell (table recipe)."""
    data = workdir / "cell.npz"
    if not data.is_file():
        write_npz(cell, data)
    out = workdir / method.replace(" ", "_")
    cmd = [sys.executable, "-m", "dynamic_selection.train", "--dataset", "npz", "--data_path", str(data),
           "--noise_kind", "none", "--method", method.split()[0], "--seed", str(cell.seed), "--output", str(out),
           "--device", "cpu", *method.split()[1:], *extra]
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL, env=env)
    summary = json.loads(next(out.rglob("summary.json")).read_text())
    return float(summary["last_test_acc"]) / 100


def warmup_command(spec: str, seed: int, args: argparse.Namespace, workdir: Path) -> tuple[list[str], int]:
    """The standard trainer's command line for a warm-up cell and its warm-up epochs."""
    from bench.detection import SCHEDULES
    from bench.real_cifar import Scale, write_reduced

    # The warm-up the README's table was measured with: bench.real_cifar's first CPU scale (Adam 1e-3, batch 32, the
    # paper's crops and flips, 100 test images per class), kept here when that benchmark moved to its un-augmented
    # 300-per-class scale, so that the table stays reproducible.
    cifar_warmup = Scale(train_per_class=args.train_per_class, test_per_class=100, arch="cifar_cnn", epochs=20,
                         batch_size=32, optimizer="adam", lr=1e-3, weight_decay=0.0, milestones=(40,), gamma=0.1,
                         warmup=20, every=5, augment="on")
    dataset, noise = spec.split()
    kind, _, value = noise.partition(":")
    noise_flags = (["--noise_kind", "human", "--noise_label", value] if kind == "human" else
                   ["--noise_kind", kind, "--noise_rate", value])
    if dataset == "digits":
        epochs = args.warmup_epochs or SCHEDULES["digits"].warmup
        data = ["--dataset", "digits", "--data_path", str(workdir / "digits")]
        schedule = replace(SCHEDULES["digits"], epochs=epochs).flags()
    elif dataset == "cifar10":
        epochs = args.warmup_epochs or cifar_warmup.warmup
        folder = workdir / f"cifar10_reduced_{args.train_per_class}"
        write_reduced(args.cifar_data, folder, train_per_class=args.train_per_class,
                      test_per_class=cifar_warmup.test_per_class)
        data = ["--dataset", "cifar10", "--data_path", str(folder), "--data_on_gpu", "on"]
        schedule = replace(cifar_warmup, epochs=epochs).flags()
    else:
        raise UserError(f"--features warmup: cell {spec!r}: use digits or cifar10 (the reduced real CIFAR-10)")
    cmd = [sys.executable, "-m", "dynamic_selection.train", *data, *noise_flags, *schedule, "--method", "standard",
           "--save_epochs", str(epochs - 1), "--seed", str(seed), "--device", "cpu"]
    return cmd, epochs


def warmup_cell(spec: str, seed: int, args: argparse.Namespace, workdir: Path) -> WarmupCell:
    """Train the standard trainer for the warm-up epochs on the cell's noisy labels and read its network's
    penultimate features and logits of the training samples from the last warm-up checkpoint."""
    from engine.detect import network_outputs
    cmd, epochs = warmup_command(spec, seed, args, workdir)
    output = workdir / "runs" / f"{spec.replace(' ', '_').replace(':', '')}_s{seed}"
    shutil.rmtree(output, ignore_errors=True)
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS=str(args.threads), PYTHONPATH=str(ROOT))
    start = time.perf_counter()
    proc = subprocess.run([*cmd, "--output", str(output)], capture_output=True, text=True, cwd=ROOT, env=env)
    seconds = time.perf_counter() - start
    if proc.returncode:
        raise UserError(f"warm-up run failed ({' '.join(cmd[2:])}): {proc.stderr.strip().splitlines()[-1:]}")
    run_dir = next(output.glob("**/args.json")).parent
    run_args = argparse.Namespace(**json.loads((run_dir / "args.json").read_text())["args"])
    out = network_outputs(run_args, run_dir / f"epoch_{epochs - 1:03d}.pt", torch.device("cpu"))
    if out.clean is None:
        raise UserError(f"--features warmup: cell {spec!r} has no clean labels to score the detectors against")
    feats = out.features.numpy().astype(np.float32)
    return WarmupCell(spec, feats, out.noisy.numpy().astype(np.int64), np.asarray(out.clean, dtype=np.int64),
                      np.zeros((0, feats.shape[1]), np.float32), np.zeros(0, np.int64), out.num_classes, seed,
                      logits=out.logits.numpy(), epochs=epochs, train_seconds=seconds)


def _mean(values: list[float]) -> float:
    values = [v for v in values if v == v]
    return statistics.fmean(values) if values else float("nan")


def summarize(rows: list[dict]) -> list[dict]:
    """Mean over seeds per (cell, detector)."""
    groups = defaultdict(list)
    for row in rows:
        groups[(row.get("source", "frozen"), row["cell"], row["detector"])].append(row)
    out = []
    for (source, cell, det), group in groups.items():
        keys = [k for k in group[0] if isinstance(group[0][k], (int, float)) and k != "seed"]
        out.append({"source": source, "cell": cell, "detector": det, "seeds": len(group),
                    **{k: _mean([g[k] for g in group]) for k in keys}})
    return out


def target_notes(summary: list[dict], target: str) -> list[str]:
    """The issue's detection targets for ``target``, met or missed by how much, per cell."""
    by = {(r["source"], r["cell"], r["detector"]): r for r in summary}
    notes = []
    for source, cell in dict.fromkeys((r["source"], r["cell"]) for r in summary):
        ours = by.get((source, cell, target))
        if ours is None:
            continue
        peers = ["cleanlab"] + (["knn"] if HUMAN_CELLS in cell else [])
        for peer in peers:
            other = by.get((source, cell, peer))
            if other is None:
                continue
            for metric in ("auroc", "f1"):
                gap = ours[metric] - other[metric]
                notes.append(f"[{source}] {cell}: {target} {metric} {ours[metric]:.3f} vs {peer} "
                             f"{other[metric]:.3f} -> "
                             f"{'met' if gap >= 0 else 'MISSED'} ({gap:+.3f})")
    return notes


def e2e_notes(summary: list[dict], target: str) -> list[str]:
    """The issue's end-to-end targets: FINE >= CleanLearning (the trainer's FINE where run, else a logistic
    regression on ``target``'s selection) and the trainer's standard training >= a plain logistic regression."""
    by = {(r["cell"], r["detector"]): r["accuracy"] for r in summary}
    trainers = sorted({r["detector"] for r in summary if r["detector"].startswith("trainer fine")})
    pairs = [*((t, "CleanLearning") for t in trainers), (f"logreg on {target}", "CleanLearning"),
             ("trainer standard", "logreg")]
    notes = []
    for cell in dict.fromkeys(r["cell"] for r in summary):
        for ours, peer in pairs:
            if (cell, ours) in by and (cell, peer) in by:
                gap = by[(cell, ours)] - by[(cell, peer)]
                notes.append(f"{cell}: {ours} {by[(cell, ours)]:.4f} vs {peer} {by[(cell, peer)]:.4f} -> "
                             f"{'met' if gap >= 0 else 'MISSED'} ({gap:+.4f})")
    return notes


def print_table(summary: list[dict]) -> None:
    print(f"{'source':10s} {'cell':28s} {'detector':34s} {'AUROC':>6s} {'F1':>6s} {'P':>6s} {'R':>6s} "
          f"{'train':>5s} {'sec':>6s}")
    for r in summary:
        print(f"{r['source']:10s} {r['cell']:28s} {r['detector']:34s} {r['auroc']:6.3f} {r['f1']:6.3f} "
              f"{r['precision']:6.3f} "
              f"{r['recall']:6.3f} {r['trainings']:5.0f} {r['seconds']:6.2f}")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--embeddings", type=str, default="/work/data/embeddings",
                        help="folder of bench.embeddings' <dataset>.npz files")
    parser.add_argument("--cells", type=str, nargs="+", default=None,
                        help='cells as "<dataset> <kind>:<rate>" or "cifar10 human:<aggre|random1|worst>" '
                             f'(default: frozen {" | ".join(DEFAULT_CELLS)}; warmup {" | ".join(WARMUP_CELLS)})')
    parser.add_argument("--features", type=str, default="frozen", choices=("frozen", "warmup", "both"),
                        help="feature source: the frozen encoder's embedding files, the trainer's own warm-up "
                             "network on the noisy labels, or both")
    parser.add_argument("--warmup_epochs", type=int, default=None,
                        help="warm-up epochs of the warmup source (default: digits 10, cifar10 20)")
    parser.add_argument("--cifar_data", type=str, default="/work/data/cifar10",
                        help="staged CIFAR-10 folder with cifar-n/CIFAR-10_human.pt (warmup source)")
    parser.add_argument("--train_per_class", type=int, default=50,
                        help="training images per class of the reduced real CIFAR-10 (warmup source)")
    parser.add_argument("--workdir", type=str, default=None,
                        help="warmup source: folder of the reduced data and the warm-up runs (default: temporary)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="seeds (subset, noise, folds)")
    parser.add_argument("--detectors", type=str, nargs="+", default=DEFAULT_DETECTORS,
                        help="detector specs: cleanlab, cleanlab:in-sample (warmup source by default), or a "
                             "registered selector with options: <selector>:<option>=<value>,... (fine, knn, loss-gmm, "
                             "small-loss, ...)")
    parser.add_argument("--target", type=str, default=TARGET_DETECTOR,
                        help="the detector the targets are checked for (engine.detect's default)")
    parser.add_argument("--size", type=int, default=5000, help="detection samples per cell (digits: all it has)")
    parser.add_argument("--test_size", type=int, default=5000, help="clean test samples per cell (digits: 540)")
    parser.add_argument("--e2e", type=str, nargs="*", default=["fine:score=lda"],
                        help="detectors whose selection trains a logistic regression (plus logreg and "
                             "CleanLearning)")
    parser.add_argument("--trainer", type=str, nargs="*", default=[],
                        help='dynamic_selection.train methods on the cell as an .npz, e.g. "standard" "fine"')
    parser.add_argument("--trainer_flags", type=str, default="",
                        help="extra flags for every trainer run (space-separated)")
    parser.add_argument("--csv", type=str, default=None, help="write one row per cell, seed and detector here")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads of torch and of numpy's BLAS")
    return parser


def _detect(cell: Cell, detectors: list[str], source: str, seed: int, rows: list[dict], **extra) -> dict:
    """Run every detector on the cell, append its rows (labelled with the feature source); the clean masks."""
    selections = {}
    for det in detectors:
        out = run_detector(det, cell)
        selections[det] = out["clean"]
        rows.append({"source": source, "cell": cell.name, "seed": seed, "detector": det,
                     **detection_metrics(out["clean"], out["score"], cell.is_clean),
                     "trainings": out["trainings"], "seconds": out["seconds"],
                     "noise_rate": float((~cell.is_clean).mean()), **extra})
    return selections


def main(argv: list[str] | None = None) -> list[dict]:
    args = get_args_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads)  # numpy/scikit-learn BLAS: oversubscribed threads slow the fits tenfold
    try:
        import cleanlab  # noqa: F401
        has_cleanlab = True
    except ImportError:
        has_cleanlab = False
        print("cleanlab is not installed (pip install -r bench/requirements.txt): its rows are skipped")
    detectors = [d for d in args.detectors if has_cleanlab or not d.startswith("cleanlab")]
    rows, e2e_rows, files = [], [], {}
    if args.features in ("frozen", "both"):
        for spec in args.cells or DEFAULT_CELLS:
            dataset, noise = spec.split()
            if dataset not in files:
                with np.load(Path(args.embeddings) / f"{dataset}.npz") as f:
                    files[dataset] = dict(f)
            size, test_size = (1257, 540) if dataset == "digits" else (args.size, args.test_size)
            for seed in args.seeds:
                cell = make_cell(files[dataset], dataset, noise, seed, size=size, test_size=test_size)
                selections = _detect(cell, detectors, "frozen", seed, rows)
                if args.e2e or args.trainer:
                    accs = e2e_logistic(cell, {d: selections[d] for d in args.e2e if d in selections}, has_cleanlab)
                    with tempfile.TemporaryDirectory() as tmp:
                        for method in args.trainer:
                            accs[f"trainer {method}"] = run_trainer(cell, method, args.trainer_flags.split(),
                                                                    Path(tmp))
                    e2e_rows += [{"source": "frozen", "cell": cell.name, "seed": seed, "detector": k, "accuracy": v}
                                 for k, v in accs.items()]
                print(f"done [frozen] {cell.name} seed {seed}", flush=True)
    if args.features in ("warmup", "both"):
        extra = [d for d in WARMUP_ONLY_DETECTORS if has_cleanlab and "cleanlab" in detectors and d not in detectors]
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(args.workdir or tmp)
            for spec in args.cells or WARMUP_CELLS:
                for seed in args.seeds:
                    cell = warmup_cell(spec, seed, args, workdir)
                    _detect(cell, detectors + extra, f"warmup{cell.epochs}", seed, rows,
                            warmup_seconds=cell.train_seconds)
                    print(f"done [warmup{cell.epochs}] {cell.name} seed {seed}: warm-up run "
                          f"{cell.train_seconds:.0f} s, {len(cell.noisy)} samples, {(~cell.is_clean).mean():.3f} "
                          "wrong", flush=True)
    summary = summarize(rows)
    print_table(summary)
    print("\ntargets (mean over seeds):")
    for note in target_notes(summary, args.target):
        print("  " + note)
    if e2e_rows:
        print("\nend to end: test accuracy (mean over seeds)")
        e2e_summary = summarize(e2e_rows)
        for r in e2e_summary:
            print(f"  [{r['source']}] {r['cell']:28s} {r['detector']:40s} {r['accuracy']:.4f}")
        print("\nend-to-end targets (mean over seeds):")
        for note in e2e_notes(e2e_summary, args.target):
            print("  " + note)
    if args.csv:
        Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
        with open(args.csv, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=sorted({k for r in rows + e2e_rows for k in r}))
            writer.writeheader()
            writer.writerows(rows + e2e_rows)
    return summary + summarize(e2e_rows)


if __name__ == "__main__":
    run_cli(main)
