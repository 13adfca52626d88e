"""Suspected label errors, ranked: FINE (Kim et al. 2021) on features you have, or on a training run's own network.

    python -m engine.detect --features feats.npy --labels labels.npy --out DIR [--clean_labels clean.npy]
    python -m engine.detect --run runs/dynamic_selection/npz-mydata_clean/standard_ce_seed1_ab12cd [--out DIR]

The first form takes (N, D) float features from any encoder and (N,) integer labels. The second takes a finished (or
running) run of either trainer: it rebuilds the run's model from its checkpoint (``--checkpoint last`` or ``best``),
extracts eval-mode penultimate features of the run's training samples (un-augmented) and runs FINE with the run's
selector settings, each overridable by a flag; the run's clean labels, where the data has them, measure the result.

Writes to ``--out`` (default ``RUN_DIR/detect``):

- ``label_issues.csv``: one row per sample, most suspect first: ``index, given_label, fine_score, clean_prob,
  suggested_label, suggested_alignment, flagged`` (the suggested label is the class whose direction the sample aligns
  with best; ``index`` is the row of the features file, or the run's training-set index);
- ``summary.json``: selected count, the estimated noise rate overall and per class (1 - selected fraction), the
  estimated transition matrix (given label x suggested label, see :func:`fine.label_issues.estimate_noise`), the
  options, and with clean labels the precision, recall, F1, specificity and accuracy of the selection (positives: the
  correctly labelled samples), the AUROC of the clean probability, and ``error_precision`` / ``error_recall``: the
  fraction of flagged samples whose label is wrong, and of wrong labels that were flagged.
"""
from __future__ import annotations

import argparse
import csv
import json
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch.utils.data import DataLoader

from engine.args import check_fit_and_score
from engine.checkpoint import load_checkpoint
from engine.data import load_data
from engine.logger import write_json
from fine.errors import UserError, run_cli
from fine.features import extract_features
from fine.label_issues import estimate_noise, rank_suspects, suggest_labels
from fine.models import create_model
from fine.selection import FITS, SCORES, VECTORS, fine_select, selection_metrics

# FINE's options and their defaults when neither a flag nor the run sets them (features from any encoder: the
# discriminant margin, the winner of python -m bench.peers against cleanlab and k-NN; see the README)
DEFAULTS = {"fit": "gmm", "p_threshold": 0.5, "score": "lda", "vector": "eigen", "gmm_max_iter": 100}


def get_args_parser() -> argparse.ArgumentParser:
    """The flags of ``python -m engine.detect``."""
    parser = argparse.ArgumentParser(prog="python -m engine.detect", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_argument_group("what to examine (one of --features/--labels or --run)")
    source.add_argument("--features", type=str, default=None, help=".npy file of (N, D) float features")
    source.add_argument("--labels", type=str, default=None, help=".npy file of (N,) integer (given) labels")
    source.add_argument("--clean_labels", type=str, default=None,
                        help="with --features: .npy file of (N,) true labels, to measure the detection")
    source.add_argument("--num_classes", type=int, default=None,
                        help="with --features: number of classes K (default: largest label + 1)")
    source.add_argument("--run", type=str, default=None, metavar="RUN_DIR",
                        help="a training run's directory (holding args.json and last.pt)")
    source.add_argument("--checkpoint", type=str, default="last", choices=("last", "best"),
                        help="with --run: the network of last.pt or of best.pt")
    source.add_argument("--device", type=str, default="auto", help="with --run: where features are extracted")
    parser.add_argument("--out", type=str, default=None,
                        help="folder the results are written to (created; default RUN_DIR/detect with --run)")
    fine = parser.add_argument_group("FINE's options (default: the run's, else the values in brackets)")
    fine.add_argument("--fit", type=str, default=None, choices=FITS,
                      help="per-class 2-component model fitted on the scores (gmm)")
    fine.add_argument("--p_threshold", type=float, default=None,
                      help="zeta: a sample is clean when the posterior of the clean component exceeds it (0.5)")
    fine.add_argument("--score", type=str, default=None, choices=SCORES,
                      help="abs = |<u, z/|z|>| (published code), squared (paper), lda = the margin of the linear "
                           "discriminant (pooled within-class covariance), re-estimated on the samples it keeps, "
                           "clean when >= 0 (--fit and --p_threshold unused), margin = abs minus the best abs "
                           "against another class's direction, a class split only when part of it lies closer to "
                           "another class (lda)")
    fine.add_argument("--vector", type=str, default=None, choices=VECTORS,
                      help="class direction: top eigenvector of the class gram matrix, or the class mean (eigen)")
    fine.add_argument("--gmm_max_iter", type=int, default=None, help="EM iterations of each class's mixture (100)")
    return parser


def _load(path: str, flag: str) -> np.ndarray:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{flag} {p} does not exist; pass an existing .npy file")
    try:
        return np.load(p, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise UserError(f"cannot read {flag} {p} as .npy ({err}); save the array with numpy.save") from None


def _check_labels(labels: np.ndarray, flag: str, n: int, num_classes: int | None) -> np.ndarray:
    """(n,) int64 labels, or a one-line UserError."""
    if labels.ndim != 1 or len(labels) != n:
        raise UserError(f"{flag} holds shape {labels.shape} but --features holds {n} rows; pass one label per row")
    if not np.issubdtype(labels.dtype, np.integer):
        raise UserError(f"{flag} holds {labels.dtype} values; pass integer class ids (e.g. labels.astype(int))")
    if n and labels.min() < 0:
        raise UserError(f"{flag} holds negative labels (min {labels.min()}); use class ids 0..K-1")
    if num_classes is not None and n and labels.max() >= num_classes:
        raise UserError(f"{flag} holds label {labels.max()} >= --num_classes {num_classes}; raise --num_classes "
                        f"or fix the labels")
    return labels.astype(np.int64)


def _from_files(args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor, int, np.ndarray | None, dict]:
    """Features, labels, class count and clean labels from ``--features``/``--labels``/``--clean_labels``."""
    if args.features is None or args.labels is None:
        raise UserError("pass --features and --labels (or --run RUN_DIR)")
    features, labels = _load(args.features, "--features"), _load(args.labels, "--labels")
    if features.ndim != 2:
        raise UserError(f"--features holds shape {features.shape}; pass a 2-D (N, D) array (flatten each sample)")
    if not np.issubdtype(features.dtype, np.number) or np.issubdtype(features.dtype, np.complexfloating):
        raise UserError(f"--features holds {features.dtype} values; pass real numbers")
    n = len(features)
    if labels.ndim != 1 or len(labels) != n:
        raise UserError(f"--features has {n} rows but --labels has {len(labels) if labels.ndim else 0} entries "
                        f"(shape {labels.shape}); pass one label per feature row")
    if args.num_classes is not None and args.num_classes < 1:
        raise UserError(f"--num_classes must be at least 1, got {args.num_classes}")
    labels = _check_labels(labels, "--labels", n, args.num_classes)
    if not np.isfinite(features).all():
        raise UserError(f"--features holds {int((~np.isfinite(features)).sum())} NaN or Inf values; clean them "
                        f"before detection")
    num_classes = args.num_classes if args.num_classes is not None else int(labels.max()) + 1 if n else 1
    clean = None
    if args.clean_labels is not None:
        clean = _check_labels(_load(args.clean_labels, "--clean_labels"), "--clean_labels", n, None)
    feats = torch.from_numpy(features.astype(np.float64 if features.dtype == np.float64 else np.float32))
    source = {"features": str(args.features), "labels": str(args.labels)}
    return feats, torch.from_numpy(labels), num_classes, clean, source


def _from_run(args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor, int, np.ndarray | None, dict]:
    """Features of a run's training samples by its own network, its noisy labels and, where known, clean labels.

    FINE options the command line left unset are taken from the run's flags.
    """
    if args.features is not None or args.labels is not None or args.clean_labels is not None:
        raise UserError("--run takes the features and labels from the run; drop --features/--labels/--clean_labels")
    run_dir = Path(args.run)
    ckpt_path = run_dir / f"{args.checkpoint}.pt"
    if not (run_dir / "args.json").is_file() or not ckpt_path.is_file():
        raise UserError(f"{run_dir} holds no args.json and {ckpt_path.name}; pass a trainer's run directory once "
                        f"it has finished an epoch")
    run_args = argparse.Namespace(**json.loads((run_dir / "args.json").read_text())["args"])
    for key in DEFAULTS:
        if getattr(args, key) is None and getattr(run_args, key, None) is not None:
            setattr(args, key, getattr(run_args, key))
    bundle = load_data(run_args).bundle
    train = bundle.train.view(bundle.test_transform)
    ckpt = load_checkpoint(ckpt_path)
    model = create_model(run_args.arch, bundle.num_classes, input_shape=tuple(train[0][0].shape),
                         init=run_args.init)
    model.load_state_dict(ckpt["models"][0])
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    loader = DataLoader(train, batch_size=256, shuffle=False)
    features, _ = extract_features(model.to(device), loader, torch.arange(len(train)), device)
    if args.out is None:
        args.out = str(run_dir / "detect")
    source = {"run": str(run_dir), "checkpoint": ckpt_path.name, "epoch": ckpt["state"]["epoch"]}
    return features, torch.as_tensor(train.noisy_labels), bundle.num_classes, train.clean_labels, source


def detect(args: argparse.Namespace) -> dict:
    """Run FINE on what ``args`` names and write ``label_issues.csv`` and ``summary.json``; returns the summary."""
    features, labels, num_classes, clean, source = (_from_run if args.run is not None else _from_files)(args)
    if args.out is None:
        raise UserError("pass --out DIR, the folder for the results")
    options = {key: DEFAULTS[key] if getattr(args, key) is None else getattr(args, key) for key in DEFAULTS}
    if not 0.0 < options["p_threshold"] < 1.0:
        raise UserError(f"--p_threshold {options['p_threshold']} is outside (0, 1)")
    check_fit_and_score(options["fit"], options["score"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sel = fine_select(features, labels, num_classes, fit=options["fit"], threshold=options["p_threshold"],
                          score=options["score"], vector=options["vector"], max_iter=options["gmm_max_iter"])
    for w in caught:
        print(f"warning: {w.message}")
    suggested, alignment = suggest_labels(features, sel.eigvecs)
    mask, n = sel.clean_mask.cpu(), len(labels)
    summary = {**source, "num_samples": n, "num_classes": num_classes, "selected": int(mask.sum()),
               **estimate_noise(mask, labels, suggested, num_classes), "options": options}
    if clean is None:
        summary["detection"] = "clean labels: not given"
    else:
        is_clean = torch.from_numpy(np.asarray(clean) == labels.numpy())
        metrics = selection_metrics(mask, is_clean)
        both = 0 < int(is_clean.sum()) < n
        metrics["auroc"] = float(roc_auc_score(is_clean.numpy(), sel.clean_prob.cpu().numpy())) if both else None
        flagged_errors = int((~mask & ~is_clean).sum())  # the label errors found
        metrics["error_precision"] = flagged_errors / max(int((~mask).sum()), 1)
        metrics["error_recall"] = flagged_errors / max(int((~is_clean).sum()), 1)
        summary["detection"] = metrics
        summary["true_noise_rate"] = float((~is_clean).float().mean()) if n else 0.0

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    order = rank_suspects(sel.clean_prob.cpu(), sel.scores.cpu()).numpy()
    columns = {"index": np.arange(n), "given_label": labels.numpy(), "fine_score": sel.scores.cpu().numpy(),
               "clean_prob": sel.clean_prob.cpu().numpy(), "suggested_label": suggested.cpu().numpy(),
               "suggested_alignment": alignment.cpu().numpy(), "flagged": (~mask).numpy().astype(int)}
    with (out / "label_issues.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows(zip(*(np.asarray(v)[order].tolist() for v in columns.values())))
    write_json(out / "summary.json", summary)
    print(f"FINE flagged {n - summary['selected']} of {n} samples ({num_classes} classes; estimated noise rate "
          f"{summary['noise_rate']:.3f}) -> {out / 'label_issues.csv'}")
    if clean is not None:
        m = summary["detection"]
        print(f"true noise rate {summary['true_noise_rate']:.3f}; label errors found: precision "
              f"{m['error_precision']:.4f} recall {m['error_recall']:.4f}; clean samples kept: precision "
              f"{m['precision']:.4f} recall {m['recall']:.4f}")
    return summary


def main(argv: list[str] | None = None) -> dict:
    """Parse ``argv`` (default: the command line) and run :func:`detect`."""
    return detect(get_args_parser().parse_args(argv))


if __name__ == "__main__":
    run_cli(main)
