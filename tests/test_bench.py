"""The benchmark scripts run end to end on tiny CPU settings and print the figures they promise."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_module(*argv: str) -> str:
    proc = subprocess.run([sys.executable, "-m", *argv], capture_output=True, text=True, timeout=600, cwd=ROOT,
                          env=dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES=""))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_train_throughput_prints_both_paths_and_the_selection_round():
    out = run_module("bench.train_throughput", "--device", "cpu", "--num_samples", "96", "--batch_size", "32")
    assert re.search(r"batches only, TensorLoader\s+[\d.]+ s\s+\d+ img/s\s+\([\d.]+x the standard path\)", out)
    assert re.search(r"standard DataLoader epoch\s+[\d.]+ s\s+\d+ img/s", out)
    assert re.search(r"TensorLoader epoch\s+[\d.]+ s\s+\d+ img/s\s+\([\d.]+x the standard path\)", out)
    assert re.search(r"selection round\s+[\d.]+ s\s+\(features [\d.]+ s \+ fine_select [\d.]+ s\) = [\d.]+ of a", out)


def test_selector_bench_compares_with_the_published_recipe():
    out = run_module("bench.selector", "--num_samples", "2000", "--dim", "32", "--classes", "5", "--rounds", "1",
                     "--skip-large", "--no-cuda")
    assert "N=2,000 D=32 C=5" in out
    assert re.search(r"fine_select \(CPU\):\s+[\d.]+ s/round", out)
    assert re.search(r"published recipe:\s+[\d.]+ s/round", out)
    agree = float(re.search(r"clean masks agree on ([\d.]+)% of samples", out).group(1))
    assert agree > 95  # the benchmark times the same selection, not a different one
    assert re.search(r"speed-up [\d.]+x", out)
