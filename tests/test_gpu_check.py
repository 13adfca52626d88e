"""``bench/gpu_check.sh --smoke`` runs every step end to end on the CPU (so the GPU check cannot rot between GPU
sessions), and ``bench.gpu_report`` judges steps and figures as documented."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from bench import gpu_report
from data_loader.fashion_mnist import load_fashion_mnist
from tests.fixtures import fashion_arrays, write_fashion_mnist

ROOT = Path(__file__).resolve().parent.parent
STEPS = {"env", "tests", "run-standard", "run-fine", "run-f-coteaching", "run-coteaching", "run-coteaching-plus",
         "run-dividemix", "run-f-dividemix", "run-compile", "run-torchrun", "run-sync-bn", "throughput-fp32",
         "throughput-bf16", "throughput-bf16-cl", "throughput-bf16-cl-compile", "selector"}
CUDA_ONLY = {"run-compile", "run-sync-bn", "throughput-bf16-cl-compile"}  # skipped by the smoke check
ONE_VARIANT = {"throughput-fp32", "throughput-bf16"}  # the smoke check times bf16 + channels_last only


def check(*argv: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "bench/gpu_check.sh", *argv], capture_output=True, text=True, timeout=400,
                          cwd=ROOT, env=dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS="1",
                                             CUDA_VISIBLE_DEVICES="", **env))


def test_smoke_check_passes_every_step_and_reports_every_figure(tmp_path):
    data = write_fashion_mnist(tmp_path / "fashion", n_train=200, n_test=50, seed=0)
    out = tmp_path / "check"
    proc = check("--smoke", "--fashion-mnist", str(data), str(out))
    report = (out / "gpu_check.md").read_text()
    assert proc.returncode == 0, report + proc.stderr[-2000:]
    steps = {s.name: s for s in gpu_report.read_steps(out)}
    assert set(steps) == STEPS
    assert {name for name, s in steps.items() if s.status == "skip"} == CUDA_ONLY | ONE_VARIANT
    assert all(s.status == "0" for name, s in steps.items() if name not in CUDA_ONLY | ONE_VARIANT)
    assert f"All {len(STEPS)} steps passed." in report
    # every figure beside its target, and the tables behind them
    for figure in ("50k-image epoch, device-resident path", "selection round / epoch",
                   "device-resident path speed / DataLoader path speed", "DivideMix: 2 selection rounds / epoch",
                   "fine_select N 4,000 D 64 C 14"):
        assert f"| {figure}" in report
    assert report.count("n/a (smoke, CPU)") == 3  # the targets are judged on a GPU only
    assert "| small_cnn, bf16 + channels_last | 64 |" in report
    runs = [line for line in report.splitlines() if line.startswith("| ") and "| PASS |" in line
            and "| bf16 |" in line]  # the trainer runs' rows: method, arch, amp from summary.json and args.json
    assert len(runs) == 8
    assert "| FINE under torchrun --nproc_per_node 1 (gloo) | PASS |" in report
    assert "0 passed, 0 failed, " in report  # the CUDA tests were collected, and skipped on the CPU
    for name in ("fine", "dividemix", "torchrun"):
        summary = gpu_report.run_summary(out / "runs" / name)
        assert summary["finished"] and summary["dataset"] == "fashion_mnist"
    assert not list((out / "runs").rglob("*.pt"))  # checkpoints are not kept
    with tarfile.open(out / "gpu_check.tar.gz") as packed:  # what a device call brings back, beside the report
        names = packed.getnames()
    assert {"steps.tsv", "env.json", "logs/run-fine.log", "json/selector.json"} <= set(names)
    assert report in proc.stdout  # printed at the end too
    assert json.loads((out / "env.json").read_text())["cuda_available"] is False


def test_bad_usage_and_a_full_check_without_a_gpu_stop_at_once(tmp_path):
    assert check().returncode == 2
    assert check("--steps").returncode == 2
    proc = check(str(tmp_path / "out"))
    assert proc.returncode == 2 and "--smoke" in proc.stderr


def test_missing_fashion_mnist_is_said_once_before_any_step(tmp_path):
    out = tmp_path / "out"
    proc = check("--smoke", "--steps", "env,trainers", "--fashion-mnist", str(tmp_path / "absent"), str(out))
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and "--fashion-mnist DIR" in lines[0] and str(tmp_path / "absent") in lines[0]
    assert not (out / "steps.tsv").exists()  # no step ran


def test_smoke_check_cuts_its_data_to_its_own_size(tmp_path):
    data = write_fashion_mnist(tmp_path / "fashion", n_train=400, n_test=120, seed=0)
    subprocess.run([sys.executable, "-m", "bench.fashion_subset", str(data), "--out", str(tmp_path / "small"),
                    "--train", "200", "--test", "50"], check=True, cwd=ROOT, capture_output=True)
    small = load_fashion_mnist(tmp_path / "small")
    full = fashion_arrays(n_train=400, n_test=120, seed=0)
    assert np.bincount(small.train_labels).tolist() == [20] * 10 and np.bincount(small.test_labels).tolist() == [5] * 10
    keep = np.sort(np.concatenate([np.flatnonzero(full.train_labels == k)[:20] for k in range(10)]))
    assert np.array_equal(small.train_images[:, 0], full.train_images[keep])
    assert np.array_equal(small.train_labels, full.train_labels[keep])


def write_check(out: Path, rows: list[tuple], *, epoch: float = 1.5, ratio: float = 0.05, skipped: int = 0) -> None:
    """A check's folder as bench/gpu_check.sh leaves it: steps, one throughput variant, a JUnit file."""
    (out / "json").mkdir(parents=True)
    (out / "logs").mkdir()
    (out / "steps.tsv").write_text("".join("\t".join(map(str, row)) + "\n" for row in rows))
    for row in rows:
        (out / "logs" / f"{row[0]}.log").write_text(f"log of {row[0]}\nlast line of {row[0]}\n")
    figures = {"arch": "preact_resnet18", "amp": "bf16", "channels_last": True, "compile": True,
               "num_samples": 50_000, "dataloader_epoch_s": 3 * epoch, "tensor_epoch_s": epoch, "speedup": 3.0,
               "epoch_50k_s": epoch, "round_s": ratio * epoch, "extract_s": ratio * epoch, "select_s": 0.0,
               "round_ratio": ratio, "warmup_s": 30.0,
               "dividemix": {"epoch_s": 10.0, "round_ratio": 0.2, "steps_per_epoch": 196, "steps_timed": 40}}
    (out / "json" / "throughput-bf16-cl-compile.json").write_text(json.dumps(figures))
    cases = "".join(f'<testcase name="t{i}"><skipped message="needs CUDA"/></testcase>' for i in range(skipped))
    (out / "json" / "tests.xml").write_text(
        f'<testsuites><testsuite name="pytest" errors="0" failures="0" skipped="{skipped}" tests="{skipped + 2}">'
        f'<testcase name="a"/><testcase name="b"/>{cases}</testsuite></testsuites>')


def test_report_judges_figures_against_their_targets(tmp_path):
    write_check(tmp_path / "fast", [("tests", 0, 50.0, 200, "CUDA tests")], epoch=1.5, ratio=0.05)
    text, passed = gpu_report.build_report(tmp_path / "fast", "full")
    assert passed and "All 1 steps passed." in text
    assert "| 1.50 s | <= 2 s on one H100 | met |" in text and "| 0.050 | <= 0.1 | met |" in text
    assert "| 0.200 | <= 0.1 | **not met** |" in text  # DivideMix's two rounds: 20% of its epoch
    assert "| 3.00x | measured | - |" in text
    write_check(tmp_path / "slow", [("tests", 0, 50.0, 200, "CUDA tests")], epoch=2.5, ratio=0.2)
    text, passed = gpu_report.build_report(tmp_path / "slow", "full")
    assert passed  # a missed target is reported, not a failed step
    assert "| 2.50 s | <= 2 s on one H100 | **not met** |" in text and "| 0.200 | <= 0.1 | **not met** |" in text
    text, _ = gpu_report.build_report(tmp_path / "slow", "smoke")
    assert "not met" not in text and text.count("n/a (smoke, CPU)") == 3


@pytest.mark.parametrize("mode", ["full", "smoke"])
def test_report_fails_what_did_not_run(tmp_path, mode):
    rows = [("env", 0, 2.0, 30, "environment"), ("tests", 0, 60.0, 200, "CUDA tests"),
            ("run-fine", 0, 12.0, 60, "FINE"), ("run-compile", 124, 120.0, 120, "compile"),
            ("run-sync-bn", "skip", 0, 0, "sync-bn (skipped: needs CUDA)"), ("selector", 1, 3.0, 150, "selector")]
    write_check(tmp_path, rows, skipped=3)
    text, passed = gpu_report.build_report(tmp_path, mode)
    assert not passed
    failed = ["run-fine", "run-compile", "selector"] + (["tests"] if mode == "full" else [])
    assert f"**{len(failed)} of 6 steps failed: " in text and all(name in text.splitlines()[2] for name in failed)
    assert "| run-fine | FINE | **FAIL**: no summary.json |" in text
    assert "| run-compile | compile | **FAIL**: stopped at its 120 s limit |" in text
    assert "| selector | selector | **FAIL**: exit status 1 |" in text
    assert "| run-sync-bn | sync-bn (skipped: needs CUDA) | SKIP |" in text
    tests_row = "| tests | CUDA tests | **FAIL**: 3 CUDA test(s) skipped on a CUDA machine |" if mode == "full" else \
        "| tests | CUDA tests | PASS |"
    assert tests_row in text
    assert "last line of selector" in text and "last line of env" not in text  # the log tails of failed steps
    assert gpu_report.main(["report", str(tmp_path), "--mode", mode]) == 1
    assert (tmp_path / "gpu_check.md").read_text() == text
