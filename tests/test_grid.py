"""scripts/grid.sh: every setting x seed is launched, finished runs are skipped, killed runs resume, one run per GPU.

The real trainers are replaced by a tiny module that keeps their ``--resume`` contract (summary.json present: skip
and exit 0; last.pt present: continue; else start) and records each call, so the tests take about a second.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GRID = ROOT / "scripts" / "grid.sh"

FAKE_TRAINER = '''
"""Mimics a trainer: --resume skips a finished run, continues one with last.pt, starts a missing one."""
import argparse, json, os, signal, time
from pathlib import Path

p = argparse.ArgumentParser()
for flag in ("--dataset", "--noise_kind", "--noise_rate", "--method", "--output", "--data_path", "--epochs"):
    p.add_argument(flag)
p.add_argument("--seed", type=int)
p.add_argument("--resume", action="store_true")
a = p.parse_args()
run = Path(a.output) / "fake" / f"{a.method}_{a.noise_rate}_seed{a.seed}"
if (run / "summary.json").exists():
    action = "skip"
elif (run / "last.pt").exists() and a.resume:
    action = "resume"
else:
    action = "start"
t0 = time.time()
if action != "skip":
    run.mkdir(parents=True, exist_ok=True)
    (run / "last.pt").write_text("checkpoint")
    if os.environ.get("FAKE_DIE") == f"{a.method}:{a.seed}" and action == "start":
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(float(os.environ.get("FAKE_SLEEP", "0")))
    (run / "summary.json").write_text(json.dumps({"finished": True, "epochs": a.epochs}))
row = {"action": action, "method": a.method, "rate": a.noise_rate, "seed": a.seed, "resume": a.resume,
       "gpu": os.environ.get("CUDA_VISIBLE_DEVICES"), "data_path": a.data_path, "epochs": a.epochs,
       "t0": t0, "t1": time.time()}
with open(Path(a.output) / "calls.jsonl", "a") as f:
    f.write(json.dumps(row) + "\\n")
print(action, run)
'''


@pytest.fixture
def grid(tmp_path):
    """Run grid.sh against the fake trainer; returns (run(args, **env) -> CompletedProcess, output dir)."""
    (tmp_path / "fake_trainer.py").write_text(FAKE_TRAINER)
    settings = tmp_path / "settings.txt"
    settings.write_text("# two settings\n\n--dataset digits --noise_kind sym --noise_rate 0.5 --method standard\n"
                        "--dataset digits --noise_kind sym --noise_rate 0.5 --method fine   # FINE\n")
    out = tmp_path / "runs"

    def run(*args: str, **env: str) -> subprocess.CompletedProcess:
        full_env = {k: v for k, v in os.environ.items() if k not in ("CUDA_VISIBLE_DEVICES", "FAKE_DIE")}
        full_env.update(TRAINER_CMD=f"{sys.executable} -m fake_trainer", PYTHONPATH=str(tmp_path), **env)
        cmd = ["bash", str(GRID), "--settings", str(settings), "--output", str(out), "--data_path",
               str(tmp_path / "data"), *args]
        return subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=60)

    return run, out


def calls(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "calls.jsonl").read_text().splitlines()]


def test_all_runs_launched_then_finished_skipped_and_killed_resumed(grid):
    run, out = grid
    first = run("--seeds", "1 2 3", "--jobs", "2", FAKE_DIE="fine:2")
    assert first.returncode == 1, first.stdout + first.stderr
    assert "1 of 6 run(s) failed" in first.stdout
    rows = calls(out)  # the killed run never reaches its log line
    assert sorted((r["method"], r["seed"]) for r in rows) == sorted(
        {(m, s) for m in ("standard", "fine") for s in (1, 2, 3)} - {("fine", 2)})
    assert all(r["action"] == "start" and r["resume"] and r["gpu"] == "" for r in rows)
    assert all(r["data_path"] == str(out.parent / "data") for r in rows)
    killed = out / "fake" / "fine_0.5_seed2"
    assert (killed / "last.pt").exists() and not (killed / "summary.json").exists()

    second = run("--seeds", "1 2 3", "--jobs", "2")
    assert second.returncode == 0, second.stdout + second.stderr
    rows = calls(out)[5:]
    assert len(rows) == 6
    assert [r for r in rows if r["action"] != "skip"] == [r for r in rows if (r["method"], r["seed"]) == ("fine", 2)]
    assert [r["action"] for r in rows if (r["method"], r["seed"]) == ("fine", 2)] == ["resume"]
    assert len(list(out.glob("fake/*/summary.json"))) == 6

    logs = sorted(p.name for p in (out / "logs" / "dynamic_selection").iterdir())
    assert len(logs) == 6 and "dataset_digits_noise_kind_sym_noise_rate_0.5_method_fine_seed2.log" in logs
    killed_log = (out / "logs" / "dynamic_selection" / logs[logs.index(
        "dataset_digits_noise_kind_sym_noise_rate_0.5_method_fine_seed2.log")]).read_text()
    assert killed_log.count("--resume") == 2 and "resume" in killed_log.splitlines()[-1]


def test_one_run_per_gpu_at_a_time(grid):
    run, out = grid
    result = run("--seeds", "1 2 3", "--extra", "--epochs 2", CUDA_VISIBLE_DEVICES="3, 5", FAKE_SLEEP="0.3")
    assert result.returncode == 0, result.stdout + result.stderr
    rows = calls(out)
    assert len(rows) == 6 and {r["gpu"] for r in rows} == {"3", "5"}
    assert all(r["epochs"] == "2" for r in rows)
    for gpu in ("3", "5"):
        spans = sorted((r["t0"], r["t1"]) for r in rows if r["gpu"] == gpu)
        assert all(end <= start for (_, end), (start, _) in zip(spans, spans[1:])), spans
    # with two GPUs and 0.3 s runs, six runs overlap in pairs rather than running one after another
    assert max(r["t1"] for r in rows) - min(r["t0"] for r in rows) < 0.3 * 6


def test_dry_run_prints_commands_and_runs_nothing(grid):
    run, out = grid
    result = run("--seeds", "7", "--dry-run", EPOCHS="4")
    assert result.returncode == 0, result.stderr
    commands = [line for line in result.stdout.splitlines() if "fake_trainer" in line]
    assert len(commands) == 2
    assert all(c.endswith(f"--epochs 4 --seed 7 --output {out} --data_path {out.parent / 'data'} --resume")
               for c in commands)
    assert not out.exists()


@pytest.mark.parametrize("args, message", [
    (("--jobs", "0"), "--jobs '0' is not a positive integer"),
    (("--trainer", "nope"), "--trainer 'nope' is not dynamic_selection or dividemix"),
    (("--extra", "--seed 3"), "the script sets --seed"),
    (("--settings", "/nonexistent.txt"), "settings file '/nonexistent.txt' not found"),
    (("--bogus",), "unknown argument '--bogus'"),
])
def test_bad_input_is_one_line_error(grid, args, message):
    run, _ = grid
    result = run(*args)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_help():
    result = subprocess.run(["bash", str(GRID), "-h"], capture_output=True, text=True, timeout=10)
    assert result.returncode == 0 and result.stdout.startswith("usage: bash scripts/grid.sh")
