"""Both trainers under ``torchrun`` with 2 CPU processes (gloo): one run, written once by rank 0, selecting what one
process selects."""
from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch.distributed as dist

from engine.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


needs_gloo = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="torch built without gloo")


def torchrun_command(tmp_path: Path, *flags: str, trainer: str = "dynamic_selection") -> tuple[list[str], dict, Path]:
    """Command, environment and working directory of a 2-process CPU run of ``trainer`` on digits."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), "-m", f"{trainer}.train", "--dataset", "digits", "--device",
           "cpu", "--data_path", str(tmp_path / "data"), "--output", str(tmp_path / "runs"), "--epochs", "2",
           "--batch_size", "64", *flags]
    return cmd, dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES=""), Path(__file__).resolve().parent.parent


def torchrun(tmp_path: Path, *flags: str, trainer: str = "dynamic_selection") -> subprocess.CompletedProcess:
    cmd, env, cwd = torchrun_command(tmp_path, *flags, trainer=trainer)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=cwd)


def only_run_dir(root: Path) -> Path:
    (run_dir,) = [p.parent for p in root.rglob("summary.json")]
    return run_dir


@needs_gloo
@pytest.mark.parametrize("method", ["fine", "coteaching"])
def test_two_process_run_writes_once_and_selects(tmp_path, method):
    extra = ["--warmup", "1", "--every", "1"] if method == "fine" else []
    proc = torchrun(tmp_path, "--method", method, *extra)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dirs = [p.parent for p in (tmp_path / "runs").rglob("summary.json")]
    assert len(run_dirs) == 1
    run_dir = run_dirs[0]
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1]  # one row per epoch: only rank 0 logs
    assert sorted(p.name for p in run_dir.glob("*.pt")) == ["best.pt", "last.pt"]
    assert proc.stdout.count("done: best test") == 1  # console output from rank 0 only
    if method == "fine":
        saved = np.load(run_dir / "selection" / "round_001.npz")
        assert rows[1]["select/selected"] == int(saved["mask"].sum()) > 0
        # every sample was scored: the two shards' features were combined by index
        assert np.count_nonzero(saved["scores"]) == len(saved["scores"])
    # the epoch's training samples were split between the two processes and summed back
    assert rows[0]["train/samples"] == 1297 if method == "fine" else rows[0]["train/kept_fraction"] > 0.5


@needs_gloo
def test_two_process_selection_of_a_balanced_draw(tmp_path):
    proc = torchrun(tmp_path, "--method", "fine", "--warmup", "1", "--every", "1", "--num_batches", "4")
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = only_run_dir(tmp_path / "runs")
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    saved = np.load(run_dir / "selection" / "round_001.npz")
    assert len(np.unique(saved["samples"])) == 4 * 64  # the round scored a draw of num_batches x batch_size
    assert np.count_nonzero(saved["scores"]) == 4 * 64  # both processes' halves of it
    assert rows[1]["train/samples"] == rows[1]["select/selected"] == int(saved["mask"].sum())


@needs_gloo
def test_two_process_elr_checkpoints_the_memory_of_every_sample(tmp_path):
    proc = torchrun(tmp_path, "--method", "standard", "--loss", "elr")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = [p.parent for p in (tmp_path / "runs").rglob("summary.json")]
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1]
    memory = load_checkpoint(run_dir / "last.pt")["losses"][0]["target"]  # (N, C), written by rank 0
    # every sample is trained on each epoch, half of them by rank 1: its rows reached rank 0's memory
    assert memory.shape[0] == rows[0]["train/samples"] == 1297
    assert bool(memory.sum(dim=1).gt(0).all())


@needs_gloo
def test_killed_two_process_run_resumes_to_the_same_result(tmp_path):
    """Kill a torchrun run once it has logged two epochs; ``--resume`` must finish it exactly as an uninterrupted run
    of the same command does (selection masks, ELR memory and per-epoch seeding all restored)."""
    flags = ["--method", "fine", "--loss", "elr", "--warmup", "1", "--every", "2", "--epochs", "6"]
    straight = torchrun(tmp_path / "straight", *flags)
    assert straight.returncode == 0, straight.stderr[-3000:]

    killed_root = tmp_path / "killed"
    cmd, env, cwd = torchrun_command(killed_root, *flags)
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = None
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        metrics = next((killed_root / "runs").rglob("metrics.jsonl"), None) if (killed_root / "runs").exists() else None
        if metrics is not None and len(metrics.read_text().splitlines()) >= 2:
            proc.send_signal(signal.SIGTERM)  # as a scheduler stops a job: torchrun stops its workers, then exits
            break
        time.sleep(0.05)
    proc.wait(timeout=60)
    run_dir = metrics.parent
    assert not (run_dir / "summary.json").exists(), "the run finished before it could be killed"

    resumed = torchrun(killed_root, *flags, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    def timeless(root: Path) -> list[dict]:
        lines = (only_run_dir(root / "runs") / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(line).items() if not k.endswith("seconds")} for line in lines]

    assert [r["epoch"] for r in timeless(killed_root)] == list(range(6))
    resumed_rows, straight_rows = timeless(killed_root), timeless(tmp_path / "straight")
    assert resumed_rows == straight_rows, [(r["epoch"], k, r[k], s.get(k)) for r, s in zip(resumed_rows, straight_rows)
                                           for k in r if r[k] != s.get(k)]


def test_sync_bn_needs_cuda(tmp_path):
    proc = torchrun(tmp_path, "--method", "standard", "--sync_bn")
    assert proc.returncode != 0 and "--sync_bn needs CUDA devices" in proc.stderr


@needs_gloo
def test_two_process_dividemix_warms_up_and_trains_once(tmp_path):
    # --num_batches 4: each network splits a fresh draw of 4 x 64 samples per epoch (its warm-up draw is twice that);
    # each process runs at most 2 of the 4 batches
    proc = torchrun(tmp_path, "--warmup", "1", "--selector", "fine", "--noise_kind", "sym", "--noise_rate", "0.4",
                    "--num_batches", "4", trainer="dividemix")
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = only_run_dir(tmp_path / "runs")
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1]
    assert sorted(p.name for p in run_dir.glob("*.pt")) == ["best.pt", "last.pt"]
    assert proc.stdout.count("done: best test") == 1
    assert rows[0]["train/net1/acc_noisy"] > 0 and rows[0]["train/net2/acc_noisy"] > 0  # warm-up, both networks
    for net in (1, 2):
        assert rows[1][f"train/net{net}/labelled"] + rows[1][f"train/net{net}/unlabelled"] == 256
        assert np.isfinite(rows[1][f"train/net{net}/loss_u"])
        # the labelled samples were split between the two processes, each running the same number of batches
        per_process = min(2, math.ceil(math.ceil(rows[1][f"train/net{net}/labelled"] / 2) / 64))
        assert rows[1][f"train/net{net}/batches"] == 2 * per_process
    saved = np.load(run_dir / "selection" / "round_001_net1.npz")  # the split covers the epoch's draw, all scored
    assert len(np.unique(saved["samples"])) == 256 and np.count_nonzero(saved["scores"]) == 256


@needs_gloo
@pytest.mark.parametrize("selector", ["loss-gmm", "fine"])
def test_two_process_dividemix_split_equals_one_process(tmp_path, selector):
    """With no warm-up the first split comes from the seeded initial networks, the same in both runs: the two
    processes, each extracting half of a network's draw of 8 x 64 samples, must make the split one process makes."""
    flags = ["--warmup", "0", "--epochs", "1", "--selector", selector, "--noise_kind", "sym", "--noise_rate", "0.4",
             "--num_batches", "8"]
    proc = torchrun(tmp_path, *flags, trainer="dividemix")
    assert proc.returncode == 0, proc.stderr[-3000:]
    single = subprocess.run([sys.executable, "-m", "dividemix.train", "--dataset", "digits", "--device", "cpu",
                             "--data_path", str(tmp_path / "data"), "--output", str(tmp_path / "single"),
                             "--batch_size", "64", *flags], capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES=""),
                            cwd=Path(__file__).resolve().parent.parent)
    assert single.returncode == 0, single.stderr[-3000:]
    for net in (1, 2):
        name = f"selection/round_000_net{net}.npz"
        two, one = (np.load(only_run_dir(tmp_path / root) / name) for root in ("runs", "single"))
        assert 0 < two["mask"].sum() < len(two["mask"])
        np.testing.assert_allclose(two["scores"], one["scores"], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(two["clean_prob"], one["clean_prob"], atol=1e-3)
        assert np.mean(two["mask"] == one["mask"]) > 0.999
