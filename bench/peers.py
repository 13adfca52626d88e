"""FINE against its peers on identical features: cleanlab, SimiFeat's k-NN votes, the loss mixture and small loss.

    python -m bench.detection --peers                      # the same as python -m bench.peers
    python -m bench.peers --cells "cifar10 human:worst" --seeds 1 2 3 --csv peers.csv
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
import warnings
from collections import defaultdict
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
# the detector the targets are checked for: engine.detect's default on given features
TARGET_DETECTOR = "fine:score=lda"


def logistic_regression(seed: int = 0):
    """The peers' classifier: standardised features, multinomial logistic regression (scikit-learn defaults)."""
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=seed))


def _cleanlab(cell: Cell) -> dict:
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores
    folds = StratifiedKFold(5, shuffle=True, random_state=cell.seed)
    probs = cross_val_predict(logistic_regression(cell.seed), cell.features, cell.noisy, cv=folds,
                              method="predict_proba")
    issues = find_label_issues(cell.noisy, probs, return_indices_ranked_by="self_confidence")
    clean = np.ones(len(cell.noisy), dtype=bool)
    clean[issues] = False
    return {"clean": clean, "score": get_label_quality_scores(cell.noisy, probs), "trainings": 5}


_LOGITS: dict[int, torch.Tensor] = {}  # per cell (by id): the one training the logit selectors share


def _logits(cell: Cell) -> torch.Tensor:
    """(N, C) log-probabilities of one logistic regression fitted on all noisy labels (their cross-entropy against
    the noisy labels is the per-sample loss)."""
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
    return {"clean": sel.clean_mask.numpy(), "score": score, "trainings": int(logits is not None)}


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
        if name == "cleanlab":
            out = _cleanlab(cell)
        elif name in REGISTRY:
            out = _registered(name, cell, parse_options(options))
        else:
            raise UserError(f"unknown detector {spec!r}; choose cleanlab or one of {', '.join(REGISTRY)}")
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


def _mean(values: list[float]) -> float:
    values = [v for v in values if v == v]
    return statistics.fmean(values) if values else float("nan")


def summarize(rows: list[dict]) -> list[dict]:
    """Mean over seeds per (cell, detector)."""
    groups = defaultdict(list)
    for row in rows:
        groups[(row["cell"], row["detector"])].append(row)
    out = []
    for (cell, det), group in groups.items():
        keys = [k for k in group[0] if isinstance(group[0][k], (int, float)) and k != "seed"]
        out.append({"cell": cell, "detector": det, "seeds": len(group), **{k: _mean([g[k] for g in group])
                                                                          for k in keys}})
    return out


def target_notes(summary: list[dict], target: str) -> list[str]:
    """The issue's detection targets for ``target``, met or missed by how much, per cell."""
    by = {(r["cell"], r["detector"]): r for r in summary}
    notes = []
    for cell in dict.fromkeys(r["cell"] for r in summary):
        ours = by.get((cell, target))
        if ours is None:
            continue
        peers = ["cleanlab"] + (["knn"] if HUMAN_CELLS in cell else [])
        for peer in peers:
            other = by.get((cell, peer))
            if other is None:
                continue
            for metric in ("auroc", "f1"):
                gap = ours[metric] - other[metric]
                notes.append(f"{cell}: {target} {metric} {ours[metric]:.3f} vs {peer} {other[metric]:.3f} -> "
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
    print(f"{'cell':28s} {'detector':34s} {'AUROC':>6s} {'F1':>6s} {'P':>6s} {'R':>6s} {'train':>5s} {'sec':>6s}")
    for r in summary:
        print(f"{r['cell']:28s} {r['detector']:34s} {r['auroc']:6.3f} {r['f1']:6.3f} {r['precision']:6.3f} "
              f"{r['recall']:6.3f} {r['trainings']:5.0f} {r['seconds']:6.2f}")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--embeddings", type=str, default="/work/data/embeddings",
                        help="folder of bench.embeddings' <dataset>.npz files")
    parser.add_argument("--cells", type=str, nargs="+", default=DEFAULT_CELLS,
                        help='cells as "<dataset> <kind>:<rate>" or "cifar10 human:<aggre|random1|worst>"')
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="seeds (subset, noise, folds)")
    parser.add_argument("--detectors", type=str, nargs="+", default=DEFAULT_DETECTORS,
                        help="detector specs: cleanlab, or a registered selector with options: "
                             "<selector>:<option>=<value>,... (fine, knn, loss-gmm, small-loss, ...)")
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
    detectors = [d for d in args.detectors if has_cleanlab or d != "cleanlab"]
    rows, e2e_rows, files = [], [], {}
    for spec in args.cells:
        dataset, noise = spec.split()
        if dataset not in files:
            with np.load(Path(args.embeddings) / f"{dataset}.npz") as f:
                files[dataset] = dict(f)
        size, test_size = (1257, 540) if dataset == "digits" else (args.size, args.test_size)
        for seed in args.seeds:
            cell = make_cell(files[dataset], dataset, noise, seed, size=size, test_size=test_size)
            selections = {}
            for det in detectors:
                out = run_detector(det, cell)
                selections[det] = out["clean"]
                rows.append({"cell": cell.name, "seed": seed, "detector": det,
                             **detection_metrics(out["clean"], out["score"], cell.is_clean),
                             "trainings": out["trainings"], "seconds": out["seconds"],
                             "noise_rate": float((~cell.is_clean).mean())})
            if args.e2e or args.trainer:
                accs = e2e_logistic(cell, {d: selections[d] for d in args.e2e if d in selections}, has_cleanlab)
                with tempfile.TemporaryDirectory() as tmp:
                    for method in args.trainer:
                        accs[f"trainer {method}"] = run_trainer(cell, method, args.trainer_flags.split(), Path(tmp))
                e2e_rows += [{"cell": cell.name, "seed": seed, "detector": k, "accuracy": v} for k, v in accs.items()]
            print(f"done {cell.name} seed {seed}", flush=True)
    summary = summarize(rows)
    print_table(summary)
    print("\ntargets (mean over seeds):")
    for note in target_notes(summary, args.target):
        print("  " + note)
    if e2e_rows:
        print("\nend to end: test accuracy (mean over seeds)")
        e2e_summary = summarize(e2e_rows)
        for r in e2e_summary:
            print(f"  {r['cell']:28s} {r['detector']:40s} {r['accuracy']:.4f}")
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
