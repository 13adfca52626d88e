"""bench.real_cifar: the reduced folder, the grid, the targets and the resumable CSV; bench.real_cifar_device: the
pack round trip and the GPU check's real-CIFAR step at toy size on the CPU."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench import real_cifar as rc
from bench import real_cifar_device as rcd
from bench import stage_cifar10 as stage
from data_loader import build_datasets
from data_loader.cifar import load_cifar
from dividemix import train as dm_train
from dynamic_selection import train as ds_train
from tests.fixtures import write_cifar10

ROOT = Path(__file__).resolve().parent.parent


def write_human(root: Path, clean: np.ndarray) -> dict:
    """CIFAR-10N-like label sets for the training labels ``clean`` (30% redrawn each), saved where the loader looks."""
    rng = np.random.default_rng(1)
    content = {"clean_label": clean}
    for key in stage.HUMAN_KEYS[1:]:
        content[key] = np.where(rng.random(len(clean)) < 0.3, rng.integers(0, 10, len(clean)), clean)
    (root / "cifar-n").mkdir(parents=True, exist_ok=True)
    torch.save(content, root / "cifar-n" / "CIFAR-10_human.pt")
    return content


def test_reduced_folder_is_a_balanced_subset_in_order_with_its_human_labels(tmp_path):
    source = write_cifar10(tmp_path / "src", n_train=200, n_test=60, seed=0)
    full = load_cifar("cifar10", source)
    human = write_human(source, full.train_labels)
    out = tmp_path / "reduced"
    record = rc.write_reduced(source, out, train_per_class=4, test_per_class=3)
    small = load_cifar("cifar10", out)
    assert np.bincount(small.train_labels, minlength=10).tolist() == [4] * 10
    assert np.bincount(small.test_labels, minlength=10).tolist() == [3] * 10
    train = rc.balanced_indices(full.train_labels, 4, rc.SUBSET_SEED)
    assert np.all(np.diff(train) > 0)  # the official order is kept
    assert np.array_equal(small.train_images, full.train_images[train])
    bundle = build_datasets("cifar10", out, noise_kind="human", noise_label="worst", noise_rate=None, seed=1)
    assert np.array_equal(bundle.train.noisy_labels, human["worse_label"][train])
    assert record["noise_rate"]["worse_label"] == pytest.approx((human["worse_label"][train] != full.train_labels[
        train]).mean())
    # the same subset again: nothing rewritten, so the noisy labels saved there stay valid
    build_datasets("cifar10", out, noise_kind="sym", noise_rate=0.5, seed=1)
    stamp = (out / "cifar-10-batches-py" / "data_batch_1").stat().st_mtime_ns
    assert rc.write_reduced(source, out, train_per_class=4, test_per_class=3)["digest"] == record["digest"]
    assert (out / "cifar-10-batches-py" / "data_batch_1").stat().st_mtime_ns == stamp
    assert list((out / "noisy_labels").glob("*.npy"))
    # another subset: rewritten, and the old noisy labels are gone
    rc.write_reduced(source, out, train_per_class=5, test_per_class=3)
    assert len(load_cifar("cifar10", out).train_labels) == 50 and not list((out / "noisy_labels").glob("*.npy"))


def test_grid_runs_three_seeds_where_the_issue_asks_and_every_core_cell_once():
    cells = rc.grid(quick=False, extras=True)
    assert len(cells) == len(set(cells))
    assert cells[:len(rc.grid(quick=False))] == rc.grid(quick=False)  # the extras come after the grid
    assert {(c.noise, c.method) for c in rc.grid(quick=False) if c.noise not in rc.CORE_NOISES} == {
        ("sym80", m) for m in ("standard", "fine", "coteaching")}  # what the sym-80 targets compare
    core = {(c.noise, c.method) for c in cells if c.noise in rc.CORE_NOISES}
    assert core == {(n, m) for n in rc.CORE_NOISES for m in rc.GRID_METHODS}
    for noise in rc.CORE_NOISES:
        for method in rc.GRID_METHODS:
            seeds = sorted(c.seed for c in cells if (c.noise, c.method) == (noise, method))
            assert seeds == ([1, 2, 3] if method in rc.THREE_SEEDS.get(noise, ()) else [1])
    first_extra = next(i for i, c in enumerate(cells) if c.noise not in rc.CORE_NOISES)
    assert all(c.noise not in rc.CORE_NOISES for c in cells[first_extra:])  # the extra settings come last
    assert rc.grid(quick=True) == [rc.Cell("sym50", m, 1) for m in ("standard", "fine", "loss-gmm")]


@pytest.mark.parametrize("noise", ["sym50", "asym40", "worst"])
def test_every_cell_command_is_accepted_by_its_trainer(noise, tmp_path):
    for method, (trainer, _) in rc.METHODS.items():
        cmd = rc.cell_command(rc.Cell(noise, method, 2), rc.SCALE, tmp_path / "data", tmp_path / "runs")
        assert cmd[:3] == [sys.executable, "-m", f"{trainer}.train"]
        module = ds_train if trainer == "dynamic_selection" else dm_train
        args = module.resolve_args(module.get_args_parser().parse_args(cmd[3:]))
        assert (args.epochs, args.arch, args.val_size, args.seed) == (rc.SCALE.epochs, rc.SCALE.arch, 0, 2)
        assert args.augment == rc.SCALE.augment
        if method in ("fine", "fine-margin", "loss-gmm", "dividemix", "f-dividemix", "f-coteaching"):
            assert args.warmup == rc.SCALE.warmup
        if method in ("fine", "f-coteaching"):
            assert args.score == "abs" and args.selector == "fine"
        if method == "coteaching":
            assert args.forget_rate == ("realised" if noise == "worst" else pytest.approx(0.9 * args.noise_rate))


def rows_of(values: dict[tuple[str, str], list[float]], drop: float = 6.0) -> list[dict]:
    return [{"noise": n, "method": m, "seed": s, "last_acc": a, "peak_acc": a + drop, "drop": drop, "wall_s": 10.0}
            for (n, m), accs in values.items() for s, a in enumerate(accs, start=1)]


def test_targets_say_met_or_by_how_much_they_are_missed():
    rows = rows_of({("sym50", "standard"): [30.0, 32.0, 34.0], ("sym50", "fine"): [35.0, 36.0, 37.0],
                    ("sym50", "coteaching"): [37.5], ("worst", "standard"): [40.0], ("worst", "fine"): [39.0],
                    ("worst", "loss-gmm"): [38.0], ("sym50", "dividemix"): [40.0],
                    ("sym50", "f-dividemix"): [39.5]})
    lines = rc.target_lines(rows)
    assert lines[0] == "regime: standard at sym 50 falls >= 5 points from its peak: met (drop 6.0, 3 seed(s))"
    assert "sym 50%: FINE >= standard: met (36.0 vs 32.0, 3 vs 3 seed(s))" in lines
    assert "sym 50%: FINE >= Co-teaching: missed by 1.5 points (36.0 vs 37.5, 3 vs 1 seed(s))" in lines
    assert "sym 50%: F-DivideMix >= DivideMix - 1: met (39.5 vs 40.0, 1 vs 1 seed(s))" in lines
    assert "CIFAR-10N worst: FINE >= standard: missed by 1.0 points (39.0 vs 40.0, 1 vs 1 seed(s))" in lines
    assert "CIFAR-10N worst: FINE >= loss-GMM: met (39.0 vs 38.0, 1 vs 1 seed(s))" in lines
    assert "sym 80%: FINE >= standard: not run" in lines
    assert rc.target_lines(rows_of({("sym50", "standard"): [30.0]}, drop=3.0))[0].endswith(
        "missed by 2.0 points (drop 3.0, 1 seed(s))")
    table = rc.table(rows)
    assert "| sym 50% | 32.0 ± 2.0 (3) | 36.0 ± 1.0 (3) |" in table and "| 38.0 / 6.0 |" in table


def test_cells_already_in_the_csv_are_not_run_again(tmp_path, monkeypatch):
    source = write_cifar10(tmp_path / "src", n_train=100, n_test=50, seed=0)
    write_human(source, load_cifar("cifar10", source).train_labels)
    small = dataclasses.replace(rc.SCALE, train_per_class=5, test_per_class=2)
    monkeypatch.setattr(rc, "SCALE", small)
    monkeypatch.setattr(rc, "QUICK_SCALE", small)
    ran = []

    def fake_run(cell, scale, data, out, threads):
        ran.append(cell)
        curve = [20.0, 30.0 + cell.seed, 25.0]
        return rc.row_from_run(cell, scale, {"selection": {"precision": 0.9, "recall": 0.8}}, curve, 1.0)

    monkeypatch.setattr(rc, "run_cell", fake_run)
    argv = ["--data_path", str(source), "--out", str(tmp_path / "out"), "--quick"]
    rows = rc.main(argv)
    assert ran == rc.grid(quick=True) and len(rows) == 3
    assert rows[0]["peak_acc"] == 31.0 and rows[0]["drop"] == 6.0 and rows[0]["curve"] == "20.0 31.0 25.0"
    ran.clear()
    assert len(rc.main(argv)) == 3 and not ran  # resumed: every cell was in the CSV
    rc.main(argv[:-1] + ["--noises", "sym50", "--methods", "standard", "--seeds", "1", "2"])
    assert ran == [rc.Cell("sym50", "standard", 2)]
    assert len(rc.read_rows(tmp_path / "out" / "cells.csv")) == 4
    ran.clear()
    assert len(rc.main(argv[:-1] + ["--report"])) == 4 and not ran  # the full grid's cells done so far, none run


def write_export(root: Path, per_class: dict[str, int]) -> tuple[Path, Path]:
    """A PNG ImageFolder export (lossless, so pixels compare exactly) and CIFAR-10N labels in an official-like order
    (CIFAR-10's first ten labels, then the rest shuffled)."""
    rng = np.random.default_rng(0)
    for split, count in per_class.items():
        for c, name in enumerate(stage.CLASSES):
            folder = root / "export" / split / name
            folder.mkdir(parents=True)
            for k in range(count):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{k:04d}.png")
    rest = np.repeat(np.arange(10), per_class["train"])
    for label in stage.FIRST_LABELS:
        rest = np.delete(rest, np.flatnonzero(rest == label)[0])
    clean = np.concatenate([stage.FIRST_LABELS, rng.permutation(rest)])
    labels = root / "human"
    write_human(labels, clean)
    return root / "export", labels / "cifar-n" / "CIFAR-10_human.pt"


def test_pack_unpacks_to_what_staging_writes(tmp_path):
    per_class = {"train": 3, "test": 2}
    export, human = write_export(tmp_path, per_class)
    stage.stage(export, human, tmp_path / "staged", per_class=per_class)
    rcd.pack(export, human, tmp_path / "pack.npz", per_class=per_class)
    info = rcd.unpack(tmp_path / "pack.npz", tmp_path / "unpacked")
    assert (info["train"], info["test"]) == (30, 20)
    a, b = load_cifar("cifar10", tmp_path / "staged"), load_cifar("cifar10", tmp_path / "unpacked")
    for key in ("train_images", "train_labels", "test_images", "test_labels"):
        assert np.array_equal(getattr(a, key), getattr(b, key)), key
    assert (tmp_path / "unpacked" / "cifar-n" / "CIFAR-10_human.pt").read_bytes() == \
        (tmp_path / "staged" / "cifar-n" / "CIFAR-10_human.pt").read_bytes()


def test_gpu_check_real_cifar_step_at_toy_size(tmp_path):
    export, human = write_export(tmp_path, {"train": 20, "test": 5})
    rcd.pack(export, human, tmp_path / "cifar10.npz", per_class={"train": 20, "test": 5})
    out = tmp_path / "check"
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHON=sys.executable, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(["bash", "bench/gpu_check.sh", "--smoke", "--steps", "real-cifar", "--cifar10",
                           str(tmp_path / "cifar10.npz"), str(out)], capture_output=True, text=True, timeout=300,
                          cwd=ROOT, env=env)
    report = (out / "gpu_check.md").read_text()
    assert proc.returncode == 0, report + proc.stderr[-2000:]
    figures = json.loads((out / "json" / "real-cifar.json").read_text())
    standard, fine = figures["runs"]
    assert standard["finished"] and fine["finished"] and fine["rounds"] >= 2
    assert len(fine["test_acc"]) == len(fine["epoch_s"]) == figures["shortened"]["epochs"]
    assert "## Real CIFAR-10, sym 50%: the paper's recipe, shortened" in report
    assert "| published recipe | resnet34 | 120 | 40 | 10 | 40 80 |" in report
