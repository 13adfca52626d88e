"""The sample-selection trainer under ``torchrun`` with 2 CPU processes (gloo): one run, written once by rank 0."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch.distributed as dist


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(tmp_path: Path, *flags: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), "-m", "dynamic_selection.train", "--dataset", "digits", "--device",
           "cpu", "--data_path", str(tmp_path / "data"), "--output", str(tmp_path / "runs"), "--epochs", "2",
           "--batch_size", "64", *flags]
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env,
                          cwd=Path(__file__).resolve().parent.parent)


@pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()), reason="torch built without gloo")
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


def test_sync_bn_needs_cuda(tmp_path):
    proc = torchrun(tmp_path, "--method", "standard", "--sync_bn")
    assert proc.returncode != 0 and "--sync_bn needs CUDA devices" in proc.stderr
