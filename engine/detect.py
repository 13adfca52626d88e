"""FINE on features you already have: find the samples whose label agrees with their class's principal direction.

For users with features from any encoder (a pretrained network, CLIP, an embedding model)::

    python -m engine.detect --features feats.npy --labels labels.npy --out detect_out [--clean_labels clean.npy]

``feats.npy`` holds (N, D) floats, ``labels.npy`` (N,) integer (noisy) labels. Writes ``clean_indices.npy`` (S,)
int64, ``scores.npy`` (N,) float32 FINE scores, ``clean_prob.npy`` (N,) float32 and ``summary.json`` to ``--out``;
with ``--clean_labels`` the summary adds the selection's precision, recall, F1, specificity and accuracy.
"""
from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np
import torch

from fine.errors import UserError, run_cli
from fine.selection import FITS, SCORES, VECTORS, fine_select, selection_metrics


def get_args_parser() -> argparse.ArgumentParser:
    """The flags of ``python -m engine.detect``."""
    parser = argparse.ArgumentParser(description="FINE clean-sample detection on precomputed features",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--features", type=str, required=True, help=".npy file of (N, D) float features")
    parser.add_argument("--labels", type=str, required=True, help=".npy file of (N,) integer (noisy) labels")
    parser.add_argument("--out", type=str, required=True, help="folder the results are written to (created)")
    parser.add_argument("--clean_labels", type=str, default=None,
                        help=".npy file of (N,) true labels, to measure the selection's precision and recall")
    parser.add_argument("--num_classes", type=int, default=None,
                        help="number of classes K (default: largest label + 1)")
    parser.add_argument("--fit", type=str, default="gmm", choices=FITS,
                        help="per-class 2-component model fitted on the scores")
    parser.add_argument("--p_threshold", type=float, default=0.5,
                        help="zeta: a sample is clean when the posterior of the clean component exceeds it")
    parser.add_argument("--score", type=str, default="abs", choices=SCORES,
                        help="|<u, z/|z|>| (published code) or its square (paper)")
    parser.add_argument("--vector", type=str, default="eigen", choices=VECTORS,
                        help="class direction: top eigenvector of the class gram matrix, or the class mean")
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


def detect(args: argparse.Namespace) -> dict:
    """Run FINE on the files ``args`` names, write the results to ``args.out``; returns the summary dict."""
    features = _load(args.features, "--features")
    labels = _load(args.labels, "--labels")
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
    if not 0.0 < args.p_threshold < 1.0:
        raise UserError(f"--p_threshold {args.p_threshold} is outside (0, 1)")
    if not np.isfinite(features).all():
        raise UserError(f"--features holds {int((~np.isfinite(features)).sum())} NaN or Inf values; clean them "
                        f"before detection")
    num_classes = args.num_classes if args.num_classes is not None else int(labels.max()) + 1 if n else 1
    clean = None
    if args.clean_labels is not None:
        clean = _check_labels(_load(args.clean_labels, "--clean_labels"), "--clean_labels", n, None)

    feats = torch.from_numpy(features.astype(np.float64 if features.dtype == np.float64 else np.float32))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sel = fine_select(feats, torch.from_numpy(labels), num_classes, fit=args.fit, threshold=args.p_threshold,
                          score=args.score, vector=args.vector)
    for w in caught:
        print(f"warning: {w.message}")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    mask = sel.clean_mask.cpu()
    np.save(out / "clean_indices.npy", sel.clean_indices().cpu().numpy().astype(np.int64))
    np.save(out / "scores.npy", sel.scores.cpu().numpy().astype(np.float32))
    np.save(out / "clean_prob.npy", sel.clean_prob.cpu().numpy().astype(np.float32))
    summary = {"num_samples": n, "num_classes": num_classes, "selected": int(mask.sum()),
               "options": {"fit": args.fit, "p_threshold": args.p_threshold, "score": args.score,
                           "vector": args.vector},
               "features": str(args.features), "labels": str(args.labels)}
    if clean is None:
        summary["selection"] = "clean labels: not given"
    else:
        metrics = selection_metrics(mask, torch.from_numpy(labels == clean))
        summary["selection"] = metrics
        summary["noise_rate"] = float((labels != clean).mean()) if n else 0.0
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"FINE kept {summary['selected']} of {n} samples ({num_classes} classes) -> {out}")
    if clean is None:
        print("clean labels: not given")
    else:
        m = summary["selection"]
        print(f"noise rate {summary['noise_rate']:.3f}; precision {m['precision']:.4f} recall {m['recall']:.4f} "
              f"f1 {m['f1']:.4f} specificity {m['specificity']:.4f} accuracy {m['accuracy']:.4f}")
    return summary


def main(argv: list[str] | None = None) -> dict:
    """Parse ``argv`` (default: the command line) and run :func:`detect`."""
    return detect(get_args_parser().parse_args(argv))


if __name__ == "__main__":
    run_cli(main)
