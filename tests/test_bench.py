"""The benchmark scripts run end to end on tiny CPU settings and print the figures they promise."""
from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_module(*argv: str) -> str:
    proc = subprocess.run([sys.executable, "-m", *argv], capture_output=True, text=True, timeout=600, cwd=ROOT,
                          env=dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES=""))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_train_throughput_prints_both_paths_and_the_selection_round(tmp_path):
    out = run_module("bench.train_throughput", "--device", "cpu", "--num_samples", "96", "--batch_size", "32",
                     "--arch", "small_cnn", "--dividemix_batches", "1", "--json", str(tmp_path / "figures.json"))
    assert re.search(r"batches only, TensorLoader\s+[\d.]+ s\s+\d+ img/s\s+\([\d.]+x the standard path\)", out)
    assert re.search(r"standard DataLoader epoch\s+[\d.]+ s\s+\d+ img/s", out)
    assert re.search(r"TensorLoader epoch\s+[\d.]+ s\s+\d+ img/s\s+\([\d.]+x the standard path\)", out)
    assert re.search(r"selection round\s+[\d.]+ s\s+\(features [\d.]+ s \+ select_samples [\d.]+ s\) = [\d.]+ of a",
                     out)
    # 96 samples: a labelled half of 48 in batches of 32 is 2 MixMatch steps per network, 1 of them timed
    assert re.search(r"DivideMix epoch\s+[\d.]+ s\s+\(2 networks x 2 MixMatch steps, extrapolated from 1 of 2 steps "
                     r"per network\); its 2 selection rounds [\d.]+ s = [\d.]+ of it", out)
    figures = json.loads((tmp_path / "figures.json").read_text())
    assert figures["num_samples"] == 96 and figures["arch"] == "small_cnn" and figures["amp"] == "off"
    assert figures["round_s"] == pytest.approx(figures["extract_s"] + figures["select_s"])
    assert figures["speedup"] == pytest.approx(figures["dataloader_epoch_s"] / figures["tensor_epoch_s"])
    assert figures["dividemix"]["steps_timed"] == 1 and figures["dividemix"]["steps_per_epoch"] == 2


def test_selector_bench_compares_with_the_published_recipe():
    out = run_module("bench.selector", "--num_samples", "2000", "--dim", "32", "--classes", "5", "--rounds", "1",
                     "--skip-large", "--no-cuda")
    assert "N=2,000 D=32 C=5" in out
    assert re.search(r"fine_select \(CPU\):\s+[\d.]+ s/round", out)
    assert re.search(r"published recipe:\s+[\d.]+ s/round", out)
    agree = float(re.search(r"clean masks agree on ([\d.]+)% of samples", out).group(1))
    assert agree > 95  # the benchmark times the same selection, not a different one
    assert re.search(r"speed-up [\d.]+x", out)


def test_detection_bench_forks_the_trainer_and_compares_detectors_on_one_cell(tmp_path):
    out = run_module("bench.detection", "--noise", "asym:0.4", "--seeds", "1", "--epochs", "4", "--detectors",
                     "fine", "fine:score=margin", "loss-gmm", "small-loss", "--trainer", "fine:score=margin",
                     "--output", str(tmp_path))
    assert "never-corrupted classes [0, 2, 5, 9]" in out  # digits asym: 1<->7, 3<->8, 5->6, 9->4
    line = {f"{m.group(1)} {m.group(2)}": m.group(0)
            for m in re.finditer(r"^digits\s+asym40\s+(\w+)\s+(\S+)\s.*$", out, re.MULTILINE)}
    assert set(line) == {"static fine", "static fine:score=margin", "static loss-gmm", "static small-loss",
                         "trainer fine:score=margin", "trainer standard"}
    assert "pure R>=.95" in line["static fine:score=margin"] and "acc " in line["trainer fine:score=margin"]
    with open(tmp_path / "detection.csv") as f:
        rows = list(csv.DictReader(f))
    static = [r for r in rows if r["phase"] == "static"]
    assert {r["detector"] for r in static} == {"fine", "fine:score=margin", "loss-gmm", "small-loss"}
    assert {int(r["epoch"]) for r in static} == {2, 3}  # --epochs 4: warm-up 2, a round every epoch
    for r in static:
        assert 0 <= float(r["precision"]) <= 1 and len(r["per_class_recall"].split()) == 10
    # the fork starts from the standard run's epoch_001.pt and selects at epochs 2 and 3 like the static phase
    runs = tmp_path / "trainer" / "digits_asym40_s1"
    assert sorted(p.name for p in runs.glob("standard/**/epoch_*.pt")) == ["epoch_001.pt", "epoch_002.pt"]
    fork_args = json.loads(next(runs.glob("fine:score=margin/**/args.json")).read_text())["args"]
    assert fork_args["init_from"].endswith("epoch_001.pt") and fork_args["selector"] == "fine"
    fork = [r for r in rows if r["phase"] == "trainer" and r["detector"] == "fine:score=margin"]
    assert [int(r["epoch"]) for r in fork if r["round"]] == [2, 3]
    assert float(next(r for r in rows if r["detector"] == "standard")["final_acc"]) > 10  # above chance on 10 classes
