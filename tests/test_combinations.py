"""Every combination of the trainers' flags runs or says why (issue #20).

For each trainer, a pairwise covering set of its flag space (data kind x method or selector x loss x lr schedule x
score x fit x ...; :mod:`tests.pairwise`, generated and checked, not hand-picked) runs as tiny two-epoch runs on tiny
fixtures of every data kind. The test's model of what is refused (``REFUSED``) splits the space: every pair of
values that an allowed row can hold is covered by rows that must end in a ``summary.json``; every pair that breaks a
rule is tried once and must end in a one-line refusal naming the rule's flags, raised before any data is loaded
and leaving no run directory. Cases run in-process, on two worker processes.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import io
import multiprocessing
import os
import subprocess
import sys
import time
import traceback
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import dividemix.train as dm
import dynamic_selection.train as ds
from data_loader import datasets
from data_loader.clothing1m import MEAN, STD
from data_loader.transforms import resize_crop_transforms
from data_loader.webvision import IMAGENET_MEAN, IMAGENET_STD
from engine import loop
from fine.errors import UserError
from tests.fixtures import write_cifar10, write_fashion_mnist
from tests.pairwise import all_pairs, covering_rows, row_pairs, uncovered_pairs
from tests.test_cifar_n import write_cifar10n
from tests.test_clothing1m import write_clothing1m
from tests.test_webvision import write_webvision

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent

DATA = ["digits", "npz-image", "npz-table", "npz-signal", "folder", "fashion_mnist", "cifar10", "cifar10n",
        "clothing1m", "webvision"]
SELECTING = ("fine", "fine/small-loss", "fine/loss-gmm", "f-coteaching")
FINE_SELECTOR = ("fine", "f-coteaching")  # methods whose rounds run FINE's selector (its options: --score, --fit)
DROPPING = ("coteaching", "coteaching+", "fine/small-loss")  # methods with a --forget_rate
PAPER_DATA = ("cifar10", "cifar10n", "clothing1m", "webvision")  # the published score by default; elsewhere a margin
FIXED_DRAWS = ("fashion_mnist", "clothing1m")  # data whose cases always pass --num_batches (see write_fixtures)
# the flags both trainers take, with the values tried (in the generator's order)
SHARED = {
    "lr_schedule": ["multistep", "cosine", "linear-decay"],
    "decay_start": [None, 1],
    "score": [None, "abs", "squared", "margin", "lda"],
    "fit": [None, "gmm", "kmeans", "bmm"],
    "reference": [None, "previous", "class"],
    "num_batches": [None, 2],
    "augment": [None, "off"],
}
SPACES = {
    "dynamic_selection": {
        "data": DATA,
        "method": ["standard", *SELECTING, "coteaching", "coteaching+"],
        "loss": ["ce", "gce", "sce", "elr"],
        **SHARED,
        "forget_rate": [None, 0.2, "auto"],
        "amp": ["off", "bf16"],
    },
    "dividemix": {
        "data": DATA,
        "selector": ["loss-gmm", "fine"],
        **SHARED,
        "loss_history": [None, 2],
        "amp": ["off", "bf16"],
    },
}


def _is(row: dict, name: str, test) -> bool:
    return name in row and test(row[name])


# What the validation layer refuses: (trainer or None for both, flags its message must name, a row breaking the
# rule, the rule on a possibly partial row).
def _eq(value: object):
    return lambda v: v == value


def _margin(row: dict) -> bool:
    """FINE scores by a margin (margin or lda, neither in [0, 1]): asked for, or unset on data other than the paper's
    (engine.args.default_score: margin; dynamic_selection's .npz table recipe: lda)."""
    return _is(row, "score", lambda v: v in ("margin", "lda")) or (_is(row, "score", _eq(None))
                                                 and _is(row, "data", lambda d: d not in PAPER_DATA))


def _set(name: str):
    return lambda r: _is(r, name, lambda v: v is not None)


REFUSED = [
    *((trainer, (f"--{name}", flag), {name: value, **example},
       lambda r, name=name, rule=rule: _set(name)(r) and rule(r))
      for name, value in (("score", "abs"), ("fit", "gmm"))  # FINE's options where another selector (or none) runs
      for trainer, flag, example, rule in (
          ("dynamic_selection", "--method", {"method": "standard"},
           lambda r: _is(r, "method", lambda m: m not in SELECTING)),
          ("dynamic_selection", "--selector", {"method": "fine/loss-gmm"},
           lambda r: _is(r, "method", lambda m: m in SELECTING and m not in FINE_SELECTOR)),
          ("dividemix", "--selector", {"selector": "loss-gmm"}, lambda r: _is(r, "selector", _eq("loss-gmm"))))),
    ("dynamic_selection", ("--reference", "--method"), {"reference": "class", "method": "standard"},
     lambda r: _set("reference")(r) and _is(r, "method", lambda m: m not in SELECTING)),
    ("dynamic_selection", ("--forget_rate", "--method"), {"forget_rate": 0.2, "method": "fine"},
     lambda r: _set("forget_rate")(r) and _is(r, "method", lambda m: m not in DROPPING)),
    ("dynamic_selection", ("--fit bmm", "--score"), {"fit": "bmm", "score": "margin", "method": "fine"},
     lambda r: _is(r, "fit", _eq("bmm")) and _margin(r) and _is(r, "method", lambda m: m in FINE_SELECTOR)),
    ("dividemix", ("--fit bmm", "--score"), {"fit": "bmm", "score": "margin", "selector": "fine"},
     lambda r: _is(r, "fit", _eq("bmm")) and _margin(r) and _is(r, "selector", _eq("fine"))),
    ("dividemix", ("--loss_history", "--selector"), {"loss_history": 2, "selector": "fine"},
     lambda r: _is(r, "loss_history", lambda v: v is not None) and _is(r, "selector", _eq("fine"))),
    ("dividemix", ("--loss_history", "--num_batches"), {"loss_history": 2, "num_batches": 2, "selector": "loss-gmm"},
     lambda r: _is(r, "loss_history", lambda v: v is not None) and _is(r, "selector", _eq("loss-gmm"))
     and (_is(r, "num_batches", lambda v: v is not None) or _is(r, "data", lambda d: d in FIXED_DRAWS))),
    (None, ("--decay_start", "--lr_schedule"), {"decay_start": 1, "lr_schedule": "cosine"},
     lambda r: _set("decay_start")(r) and _is(r, "lr_schedule", lambda v: v not in (None, "linear-decay"))),
]


def broken_rules(trainer: str, row: dict) -> list[tuple[str, ...]]:
    """The flags of each rule of ``REFUSED`` that ``row`` breaks."""
    return [flags for owner, flags, _, rule in REFUSED if owner in (None, trainer) and rule(row)]


def allowed(trainer: str):
    return lambda row: not broken_rules(trainer, row)


def cases(trainer: str) -> tuple[list[dict], list[dict]]:
    """(rows that must run, rows that must be refused): a covering set of the allowed pairs; for every pair no
    allowed row holds one row holding it, and for each rule no such row breaks its example (both completed from the
    first running row)."""
    params, ok = SPACES[trainer], allowed(trainer)
    running = covering_rows(params, allowed=ok, seed=20, candidates=10)
    covered = set().union(*(row_pairs(params, r) for r in running))
    refused = [{**running[0], a: x, b: y} for (a, x), (b, y) in sorted(all_pairs(params) - covered, key=repr)]
    for owner, _, example, rule in REFUSED:
        if owner in (None, trainer) and not any(rule(row) for row in refused):
            refused.append({**running[0], **example})
    return running, refused


# --- tiny fixtures of every data kind ---------------------------------------------------------------------------------

def write_fixtures(root: Path) -> dict[str, list[str]]:
    """Every data kind on disk under ``root``; returns the data flags of each."""
    rng = np.random.default_rng(0)
    labels = np.arange(48) % 3
    test_labels = np.arange(12) % 3
    np.savez(root / "images.npz", x_train=rng.integers(0, 256, (48, 8, 8, 3), dtype=np.uint8), y_train=labels,
             y_train_clean=labels, x_test=rng.integers(0, 256, (12, 8, 8, 3), dtype=np.uint8), y_test=test_labels)
    np.savez(root / "table.npz", x_train=rng.normal(size=(48, 5)) + labels[:, None], y_train=labels,
             x_test=rng.normal(size=(12, 5)) + test_labels[:, None], y_test=test_labels)
    np.savez(root / "signal.npz", x_train=rng.normal(size=(48, 2, 16)).astype(np.float32), y_train=labels,
             y_train_clean=labels, x_test=rng.normal(size=(12, 2, 16)).astype(np.float32), y_test=test_labels)
    for split, n in (("train", 6), ("test", 2)):
        for k in range(3):
            folder = root / "folder" / split / f"class{k}"
            folder.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    write_fashion_mnist(root / "fashion", n_train=60, n_test=20, seed=0)
    write_cifar10(root / "cifar", n_train=100, n_test=20, seed=0)
    write_cifar10n(root / "cifar")
    (root / "clothing1m").mkdir()
    write_clothing1m(root / "clothing1m")
    write_webvision(root)
    image = ["--arch", "small_cnn"]
    return {
        "digits": ["--dataset", "digits", "--data_path", str(root / "digits")],
        "npz-image": ["--dataset", "npz", "--data_path", str(root / "images.npz"), "--noise_rate", "0.2", *image],
        "npz-table": ["--dataset", "npz", "--data_path", str(root / "table.npz"), "--noise_kind", "none"],
        "npz-signal": ["--dataset", "npz", "--data_path", str(root / "signal.npz"), "--noise_rate", "0.2"],
        "folder": ["--dataset", "folder", "--data_path", str(root / "folder"), "--noise_kind", "none", *image],
        "fashion_mnist": ["--dataset", "fashion_mnist", "--data_path", str(root / "fashion"), "--num_batches", "1",
                          *image],
        "cifar10": ["--dataset", "cifar10", "--data_path", str(root / "cifar"), "--noise_rate", "0.2", *image],
        "cifar10n": ["--dataset", "cifar10", "--data_path", str(root / "cifar"), "--noise_kind", "human",
                     "--noise_label", "worst", *image],
        "clothing1m": ["--dataset", "clothing1m", "--data_path", str(root / "clothing1m"), "--num_batches", "1",
                       *image],
        "webvision": ["--dataset", "webvision", "--data_path", str(root / "webvision"), *image],
    }


def argv(trainer: str, row: dict, data_flags: dict[str, list[str]], output: Path) -> list[str]:
    """The command line of one case: the row's flags on its data, two epochs of batches of 32 on the CPU (Clothing1M
    and Fashion-MNIST with --num_batches 1 unless the row sets it: their CPU recipes draw hundreds of batches)."""
    flags = [*data_flags[row["data"]], "--device", "cpu", "--epochs", "2", "--batch_size", "32", "--output",
             str(output), "--lr_schedule", row["lr_schedule"], "--amp", row["amp"]]
    for name in ("score", "fit", "decay_start", "reference", "num_batches", "forget_rate", "loss_history"):
        if row.get(name) is not None:
            flags += [f"--{name}", str(row[name])]
    if trainer == "dividemix":  # CIFAR-N: DivideMix publishes no lambda_u (tests/test_dividemix.py checks it asks)
        return flags + ["--selector", row["selector"], "--warmup", "1"] + (
            ["--lambda_u", "25"] if row["data"] == "cifar10n" else [])
    method, _, selector = row["method"].partition("/")
    flags += ["--method", method, "--loss", row["loss"]]
    flags += ["--selector", selector] if selector else []
    flags += ["--warmup", "1", "--every", "1"] if row["method"] in SELECTING else []
    return flags + (["--val_size", "0"] if row["data"] != "digits" else [])


# --- running a case ---------------------------------------------------------------------------------------------------

def run_case(trainer: str, flags: list[str]) -> dict:
    """Run one case in this process: ``{"summary": run directory}``, ``{"error": message, "loaded": whether data
    was loaded}`` for a refusal, or ``{"crash": traceback}``."""
    torch.set_num_threads(1)
    # Clothing1M's and WebVision's 224- and 299-pixel crops cost seconds per image on the CPU, and the flags do not
    # touch them (tests/test_realworld_trainers.py runs them): 16-pixel crops here.
    datasets.clothing1m_transforms = lambda: resize_crop_transforms(20, 16, MEAN, STD)
    datasets.webvision_transforms = lambda: resize_crop_transforms(20, 16, IMAGENET_MEAN, IMAGENET_STD)
    module = dm if trainer == "dividemix" else ds
    loads = []
    real_load = loop.load_data
    loop.load_data = lambda args: loads.append(1) or real_load(args)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            summary = module.main(module.get_args_parser().parse_args(flags))
        return {"summary": summary["run_dir"]}
    except UserError as err:
        return {"error": str(err), "loaded": bool(loads)}
    except Exception:  # a crash: reported with the others, its traceback's end shown
        return {"crash": traceback.format_exc()[-1200:]}
    finally:
        loop.load_data = real_load


@pytest.fixture(scope="module")
def data_flags(tmp_path_factory) -> dict[str, list[str]]:
    return write_fixtures(tmp_path_factory.mktemp("data"))


def test_generated_cases_cover_every_pair_and_each_rule():
    for trainer, params in SPACES.items():
        running, refused = cases(trainer)
        ok = allowed(trainer)
        assert all(ok(row) for row in running) and not uncovered_pairs(params, running, ok)
        assert all(broken_rules(trainer, row) for row in refused)
        covered = set().union(*(row_pairs(params, r) for r in running + refused))
        assert covered == all_pairs(params)  # each pair: run where a rule allows it, refused where none does
        for owner, flags, _, rule in REFUSED:  # every rule of the model is tried
            assert owner not in (None, trainer) or any(rule(row) for row in refused), flags
    assert cases("dividemix") == cases("dividemix")  # deterministic


def test_pairwise_generator_on_a_known_answer():
    params = {"a": [0, 1], "b": [0, 1], "c": [0, 1], "d": [0, 1, 2]}
    no_a1_b1 = lambda row: not (row.get("a") == 1 and row.get("b") == 1)  # noqa: E731
    rows = covering_rows(params, allowed=no_a1_b1, seed=0)
    assert len(rows) <= 8 and all(no_a1_b1(r) for r in rows)
    assert not uncovered_pairs(params, rows, no_a1_b1)
    assert uncovered_pairs(params, rows[1:], no_a1_b1)  # the check can fail: one row fewer leaves a pair out
    assert (("a", 1), ("b", 1)) not in uncovered_pairs(params, [], no_a1_b1)


def test_every_combination_runs_or_says_why(data_flags, tmp_path):
    jobs = []
    for trainer in SPACES:
        running, refused = cases(trainer)
        jobs += [(trainer, row, True) for row in running] + [(trainer, row, False) for row in refused]
    start = time.time()
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=context) as pool:
        futures = [pool.submit(run_case, trainer, argv(trainer, row, data_flags, tmp_path / f"runs{i}"))
                   for i, (trainer, row, _) in enumerate(jobs)]
        outcomes = [f.result() for f in futures]
    failures = []
    for i, ((trainer, row, runs), outcome) in enumerate(zip(jobs, outcomes)):
        if runs:
            if "summary" not in outcome or not (Path(outcome["summary"]) / "summary.json").is_file():
                failures.append(f"{trainer} {row}: expected a summary, got {outcome}")
            continue
        rules = broken_rules(trainer, row)
        error = outcome.get("error", "")
        if "error" not in outcome or "\n" in error or outcome["loaded"] or (tmp_path / f"runs{i}").exists():
            failures.append(f"{trainer} {row}: expected a refusal before any data, got {outcome}")
        elif not any(all(flag in error for flag in flags) for flags in rules):
            failures.append(f"{trainer} {row}: the refusal {error!r} names none of the rules {rules}")
    print(f"{len(jobs)} cases ({sum(r for _, _, r in jobs)} runs) in {time.time() - start:.0f} s")
    assert not failures, "\n".join(failures)


def test_a_refused_run_says_so_again_and_leaves_nothing(tmp_path):
    """The issue's report: a run refused after set-up began left its directory behind, so the same command then
    said "already exists" and hid the real error."""
    command = [sys.executable, "-m", "dynamic_selection.train", "--dataset", "digits", "--arch", "cnn1d",
               "--device", "cpu", "--output", str(tmp_path / "runs"), "--data_path", str(tmp_path / "data")]
    for _ in range(2):
        proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=120,
                              env=dict(os.environ, OMP_NUM_THREADS="1"))
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1
        assert proc.stderr.startswith("error: --arch cnn1d takes signals") and "small_cnn" in proc.stderr
    assert not (tmp_path / "runs").exists() and not (tmp_path / "data").exists()
