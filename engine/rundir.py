"""The run directory: its name, its ``args.json``, the git commit it ran, and seeding."""
from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import subprocess
from pathlib import Path

import numpy as np
import torch

from fine.errors import UserError
from engine.logger import write_json

# Flags that change where or how a run executes, not what it computes: they stay out of the run's name.
NON_DEFINING = frozenset({"output", "resume", "overwrite", "dry_run", "device", "workers", "data_path",
                          "save_epochs"})
# Flags added after run directories were first named: they enter the hash only when set away from these values, so a
# run started by an earlier version keeps its directory (and --resume finds it).
LATER_FLAGS = {"augment": "on"}


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def git_commit() -> str | None:
    """The repository's current commit (with ``-dirty`` if the tree has changes), or None outside git."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def run_name(args: argparse.Namespace, parts: list[str]) -> str:
    """``<dataset>_<noise>/<parts joined by '_'>_seed<seed>_<hash>`` where the hash covers every defining argument.

    Two runs that differ in any hyperparameter get different directories; the readable part names the ones a reader
    looks for first.
    """
    defining = {k: v for k, v in sorted(vars(args).items())
                if k not in NON_DEFINING and not (k in LATER_FLAGS and v == LATER_FLAGS[k])}
    digest = hashlib.sha1(json.dumps(defining, sort_keys=True, default=str).encode()).hexdigest()[:6]
    if args.noise_kind in ("none", "real"):
        noise = {"none": "clean", "real": "real"}[args.noise_kind]
    elif args.noise_kind == "human":
        noise = f"human-{args.noise_label}"
    else:
        noise = f"{args.noise_kind}{args.noise_rate:g}"
    if args.noise_file:
        noise = f"file-{Path(args.noise_file).stem}"
    dataset = f"{args.dataset}-{Path(args.data_path).stem}" if args.dataset in ("npz", "folder") else args.dataset
    return f"{dataset}_{noise}/" + "_".join([*parts, f"seed{args.seed}", digest])


def plan_run_dir(args: argparse.Namespace, trainer: str, parts: list[str]) -> tuple[Path, bool]:
    """The run directory's path and whether the run resumes from its ``last.pt``; nothing is written yet.

    An existing directory is refused unless ``--resume`` (continue it) or ``--overwrite`` (replace it, in
    :func:`open_run_dir`) is given. :func:`open_run_dir` makes the directory once the run is set up, so a run refused
    before its first epoch leaves nothing behind.
    """
    run_dir = Path(args.output) / trainer / run_name(args, parts)
    if run_dir.exists() and not (args.resume or args.overwrite):
        raise UserError(f"run directory {run_dir} already exists; pass --resume to continue it or --overwrite to "
                        f"start again")
    return run_dir, bool(args.resume) and (run_dir / "last.pt").exists()


def open_run_dir(run_dir: Path, args: argparse.Namespace, trainer: str) -> None:
    """Make ``run_dir`` (after deleting an existing one with ``--overwrite``) and write its ``args.json``."""
    if args.overwrite and run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "args.json", {"trainer": trainer, "git_commit": git_commit(), "args": vars(args)})


def print_args(args: argparse.Namespace) -> None:
    """Print the resolved arguments, one per line, with the git commit."""
    print(f"git commit: {git_commit()}")
    for key, value in sorted(vars(args).items()):
        print(f"  {key:>18}: {value}")
