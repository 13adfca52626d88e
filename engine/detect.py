"""Suspected label errors, ranked: FINE (Kim et al. 2021) or any registered selector (``--selector NAME``, see
``fine.selection.REGISTRY``) on features you have, or on a training run's own network.

    python -m engine.detect --features feats.npy --labels labels.npy --out DIR [--clean_labels clean.npy]
    python -m engine.detect --features feats.npy --logits logits.npy --labels labels.npy --selector loss-gmm --out DIR
    python -m engine.detect --run runs/dynamic_selection/npz-mydata_clean/standard_ce_seed1_ab12cd [--out DIR]

The first forms take (N, D) float features from any encoder, (N,) integer labels and, for selectors that need them
(the loss-based ones), (N, K) logits. The last takes a finished (or running) run of either trainer: it rebuilds the
run's model from its checkpoint (``--checkpoint last`` or ``best``), extracts eval-mode penultimate features and
logits of the run's training samples (un-augmented) and runs the selector with the run's settings, each overridable by
a flag; the run's clean labels, where the data has them, measure the result.

Writes to ``--out`` (default ``RUN_DIR/detect``):

- ``label_issues.csv``: one row per sample, most suspect first: ``index, given_label, score, clean_prob,
  suggested_label, suggested_alignment, flagged`` (``score`` is the statistic the selector split: FINE's alignment,
  or a loss; the suggested label is the class whose FINE direction the sample aligns with best; ``index`` is the row
  of the features file, or the run's training-set index);
- ``summary.json``: selected count, the estimated noise rate overall and per class (1 - selected fraction), the
  estimated transition matrix (given label x suggested label, see :func:`fine.label_issues.estimate_noise`), the
  selector and its options, and with clean labels the precision, recall, F1, specificity and accuracy of the
  selection (positives: the correctly labelled samples), the AUROC of the clean probability, and
  ``error_precision`` / ``error_recall``: the fraction of flagged samples whose label is wrong, and of wrong labels
  that were flagged.
"""
from __future__ import annotations

import argparse
import csv
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch.utils.data import DataLoader

from engine.args import add_option_flag, check_selector_flags
from engine.checkpoint import load_checkpoint
from engine.data import load_data
from engine.logger import write_json
from fine.errors import UserError, run_cli
from fine.features import extract_features
from fine.label_issues import estimate_noise, rank_suspects, suggest_labels
from fine.models import create_model
from fine.selection import (REGISTRY, Selection, SelectorConfig, class_top_eigenvectors, get_selector,
                            select_samples, selection_metrics)
from fine.selection.registry import all_options

# Where neither a flag nor the run sets them: FINE's discriminant margin (score lda), the winner of python -m
# bench.peers against cleanlab and k-NN on features from any encoder (see the README); a run keeps its own settings,
# and every other option takes its selector's default.
DEFAULTS = {"score": "lda"}


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
    source.add_argument("--logits", type=str, default=None,
                        help="with --features: .npy file of (N, K) network outputs, for selectors that need them")
    chosen = parser.add_argument_group("the selector and its options (default: the run's, else the selector's; "
                                       "FINE's score: lda)")
    chosen.add_argument("--selector", type=str, default=None, choices=tuple(REGISTRY),
                        help="; ".join(spec.help for spec in REGISTRY.values()) +
                             " (default: the run's selector, else fine)")
    for option in all_options().values():
        add_option_flag(chosen, option)
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


@dataclass
class Examined:
    """What the selector examines: (N, D) features, (N, K) logits (None when not given), (N,) int64 given labels,
    the class count K, (N,) clean labels (None when unknown) and where they came from (for the summary)."""

    features: torch.Tensor
    logits: torch.Tensor | None
    labels: torch.Tensor
    num_classes: int
    clean: np.ndarray | None
    source: dict


def _logits(args: argparse.Namespace, n: int, num_classes: int) -> torch.Tensor | None:
    """(n, num_classes) float32 logits from ``--logits``, or None without the flag."""
    if args.logits is None:
        return None
    logits = _load(args.logits, "--logits")
    if logits.shape != (n, num_classes) or not np.issubdtype(logits.dtype, np.floating):
        raise UserError(f"--logits holds {logits.dtype} {logits.shape}; pass float ({n}, {num_classes}) outputs, "
                        f"one row per feature row and one column per class")
    if not np.isfinite(logits).all():
        raise UserError(f"--logits holds {int((~np.isfinite(logits)).sum())} NaN or Inf values; clean them first")
    return torch.from_numpy(logits.astype(np.float32))


def _from_files(args: argparse.Namespace) -> Examined:
    """Features, logits, labels, class count and clean labels from ``--features``/``--logits``/``--labels``/
    ``--clean_labels``."""
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
    if args.logits is not None:
        source["logits"] = str(args.logits)
    return Examined(feats, _logits(args, n, num_classes), torch.from_numpy(labels), num_classes, clean, source)


@dataclass
class NetworkOutputs:
    """Eval-mode outputs of a checkpoint's first network on its run's un-augmented training samples, in dataset
    order: (N, D) features, (N, K) logits, (N,) int64 noisy labels, (N,) clean labels (None when unknown), the
    class count K and the epoch after which the checkpoint was written."""

    features: torch.Tensor
    logits: torch.Tensor
    noisy: torch.Tensor
    clean: np.ndarray | None
    num_classes: int
    epoch: int


def network_outputs(run_args: argparse.Namespace, checkpoint: Path, device: torch.device) -> NetworkOutputs:
    """Rebuild the run's data and first network from ``checkpoint`` and extract its outputs (see
    :class:`NetworkOutputs`)."""
    bundle = load_data(run_args).bundle
    train = bundle.train.view(bundle.test_transform)
    ckpt = load_checkpoint(checkpoint)
    model = create_model(run_args.arch, bundle.num_classes, input_shape=tuple(train[0][0].shape),
                         init=run_args.init)
    model.load_state_dict(ckpt["models"][0])
    loader = DataLoader(train, batch_size=256, shuffle=False)
    features, logits = extract_features(model.to(device), loader, torch.arange(len(train)), device)
    return NetworkOutputs(features, logits, torch.as_tensor(train.noisy_labels), train.clean_labels,
                          bundle.num_classes, ckpt["state"]["epoch"])


def _from_run(args: argparse.Namespace) -> Examined:
    """Features and logits of a run's training samples by its own network, its noisy labels and, where known, clean
    labels. Selector options the command line left unset are taken from the run's flags."""
    given = [args.features, args.labels, args.clean_labels, args.logits]
    if any(path is not None for path in given):
        raise UserError("--run takes the features and labels from the run; drop --features/--logits/--labels/"
                        "--clean_labels")
    run_dir = Path(args.run)
    ckpt_path = run_dir / f"{args.checkpoint}.pt"
    if not (run_dir / "args.json").is_file() or not ckpt_path.is_file():
        raise UserError(f"{run_dir} holds no args.json and {ckpt_path.name}; pass a trainer's run directory once "
                        f"it has finished an epoch")
    run_args = argparse.Namespace(**json.loads((run_dir / "args.json").read_text())["args"])
    for option in get_selector(args.selector).options:
        if getattr(args, option.name) is None and getattr(run_args, option.name, None) is not None:
            setattr(args, option.name, getattr(run_args, option.name))
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    outputs = network_outputs(run_args, ckpt_path, device)
    if args.out is None:
        args.out = str(run_dir / "detect")
    source = {"run": str(run_dir), "checkpoint": ckpt_path.name, "epoch": outputs.epoch}
    return Examined(outputs.features, outputs.logits, outputs.noisy, outputs.num_classes, outputs.clean, source)


def _select(args: argparse.Namespace, data: Examined) -> tuple[Selection, dict]:
    """The selection of ``--selector`` with its resolved options; warnings printed, bad options one-line errors."""
    spec = get_selector(args.selector)
    values = {o.name: DEFAULTS.get(o.name) if getattr(args, o.name) is None else getattr(args, o.name)
              for o in spec.options}
    if "logits" in spec.needs and data.logits is None:
        raise UserError(f"--selector {spec.name} needs the network's outputs; pass --logits LOGITS.npy, (N, K) "
                        f"floats, one row per feature row")
    try:
        config = SelectorConfig(spec.name, values)
    except ValueError as err:
        raise UserError(str(err)) from None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sel = select_samples(config, data.features, data.logits, data.labels, data.num_classes)
    for w in caught:
        print(f"warning: {w.message}")
    return sel, config.options


def _detection(sel: Selection, labels: torch.Tensor, clean: np.ndarray) -> dict:
    """Quality of the selection against the clean labels (see the module docstring)."""
    mask, n = sel.clean_mask.cpu(), len(labels)
    is_clean = torch.from_numpy(np.asarray(clean) == labels.numpy())
    metrics = selection_metrics(mask, is_clean)
    both = 0 < int(is_clean.sum()) < n
    metrics["auroc"] = float(roc_auc_score(is_clean.numpy(), sel.clean_prob.cpu().numpy())) if both else None
    flagged_errors = int((~mask & ~is_clean).sum())  # the label errors found
    metrics["error_precision"] = flagged_errors / max(int((~mask).sum()), 1)
    metrics["error_recall"] = flagged_errors / max(int((~is_clean).sum()), 1)
    return metrics


def detect(args: argparse.Namespace) -> dict:
    """Run ``--selector`` on what ``args`` names and write ``label_issues.csv`` and ``summary.json``; returns the
    summary."""
    if args.selector is None:  # a run's own selector (a run without selection rounds has none), else FINE
        run_args = Path(args.run or "") / "args.json"
        args.selector = (json.loads(run_args.read_text())["args"].get("selector") if args.run and run_args.is_file()
                         else None) or "fine"
    check_selector_flags(args)
    data = (_from_run if args.run is not None else _from_files)(args)
    if args.out is None:
        raise UserError("pass --out DIR, the folder for the results")
    sel, options = _select(args, data)
    spec, labels, num_classes = get_selector(args.selector), data.labels, data.num_classes
    # the suggested label: the class whose FINE direction the sample aligns with best
    vectors = sel.eigvecs if sel.eigvecs is not None else class_top_eigenvectors(data.features, labels, num_classes)
    suggested, alignment = suggest_labels(data.features, vectors)
    mask, n = sel.clean_mask.cpu(), len(labels)
    summary = {**data.source, "num_samples": n, "num_classes": num_classes, "selected": int(mask.sum()),
               **estimate_noise(mask, labels, suggested, num_classes), "selector": spec.name, "options": options}
    if data.clean is None:
        summary["detection"] = "clean labels: not given"
    else:
        summary["detection"] = _detection(sel, labels, data.clean)
        summary["true_noise_rate"] = float((labels.numpy() != np.asarray(data.clean)).mean()) if n else 0.0

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scores = sel.scores.cpu()
    order = rank_suspects(sel.clean_prob.cpu(), scores if spec.higher_is_cleaner else -scores).numpy()
    columns = {"index": np.arange(n), "given_label": labels.numpy(), "score": scores.numpy(),
               "clean_prob": sel.clean_prob.cpu().numpy(), "suggested_label": suggested.cpu().numpy(),
               "suggested_alignment": alignment.cpu().numpy(), "flagged": (~mask).numpy().astype(int)}
    with (out / "label_issues.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows(zip(*(np.asarray(v)[order].tolist() for v in columns.values())))
    write_json(out / "summary.json", summary)
    print(f"{spec.label} flagged {n - summary['selected']} of {n} samples ({num_classes} classes; estimated noise "
          f"rate {summary['noise_rate']:.3f}) -> {out / 'label_issues.csv'}")
    if data.clean is not None:
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
