"""The GPU check's environment probe and its report: every step's verdict, every figure beside its target.

    python -m bench.gpu_report env OUT_DIR/env.json            # print and save the environment
    python -m bench.gpu_report report OUT_DIR --mode full      # write OUT_DIR/gpu_check.md; exit 1 if a step failed

``bench/gpu_check.sh`` runs both. The report reads what the check left in ``OUT_DIR``: ``steps.tsv`` (one row per
step: name, exit status or ``skip``, seconds, time limit, description), ``env.json``, ``json/tests.xml`` (pytest's
JUnit file), ``json/throughput-*.json`` (``bench.train_throughput --json``), ``json/selector.json``
(``bench.selector --json``) and ``runs/<run>/`` (the trainer runs, whose ``summary.json`` and ``args.json`` it
reads). A step passes when it exited 0; the CUDA tests step also needs, in a full check, no skipped test (a test
skipped on a CUDA machine did not run), and a trainer run needs its ``summary.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

EPOCH_TARGET_S = 2.0  # a 50k-image PreAct ResNet-18 training epoch on one H100
ROUND_TARGET = 0.10  # a selection round as a fraction of an epoch
TIMEOUT_CODES = ("124", "137")  # timeout's status for a command it stopped (TERM, then KILL)


@dataclass
class Step:
    """One row of ``steps.tsv``: ``status`` is the command's exit status as text, or ``skip``."""

    name: str
    status: str
    seconds: float
    limit: int
    description: str


def environment() -> dict:
    """The machine the check ran on: Python, torch, CUDA, cuDNN and NCCL versions, the GPU, its driver and memory,
    and whether bf16 autocast runs (the GPU's support, or on the CPU a bf16 matmul under autocast)."""
    import torch
    info: dict = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
                  "cudnn": torch.backends.cudnn.version(), "cpu_count": os.cpu_count(),
                  "cuda_available": torch.cuda.is_available()}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        nccl = torch.cuda.nccl.version()  # a tuple in recent torch, an int in older ones
        info.update(gpu=props.name, gpu_count=torch.cuda.device_count(), capability=f"{props.major}.{props.minor}",
                    gpu_memory_gib=round(props.total_memory / 2**30, 1), bf16=torch.cuda.is_bf16_supported(),
                    nccl=".".join(map(str, nccl)) if isinstance(nccl, tuple) else str(nccl))
    else:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            info["bf16"] = (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    if shutil.which("nvidia-smi"):
        query = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                               capture_output=True, text=True)
        info["driver"] = query.stdout.strip().splitlines()[0] if query.returncode == 0 and query.stdout else None
    return info


GROUPS = ("env", "tests", "run-", "throughput-", "selector")  # the report's order of the steps


def read_steps(out_dir: Path) -> list[Step]:
    """The rows of ``steps.tsv`` grouped as :data:`GROUPS`, in the order they finished within a group (empty when
    there is no file)."""
    path = out_dir / "steps.tsv"
    if not path.exists():
        return []
    steps = []
    for line in path.read_text().splitlines():
        name, status, seconds, limit, description = line.split("\t")
        steps.append(Step(name, status, float(seconds), int(limit), description))
    group = {s.name: next((i for i, g in enumerate(GROUPS) if s.name.startswith(g)), len(GROUPS)) for s in steps}
    return sorted(steps, key=lambda s: group[s.name])


def test_counts(junit: Path) -> dict | None:
    """``tests``, ``failures``, ``errors``, ``skipped`` and the failed and skipped test names of a pytest JUnit file
    (None when it is missing or unreadable, e.g. pytest was stopped)."""
    try:
        root = ET.parse(junit).getroot()
    except (OSError, ET.ParseError):
        return None
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    cases = list(suite.iter("testcase"))
    counts["failed"] = [c.get("name") for c in cases if c.find("failure") is not None or c.find("error") is not None]
    counts["skipped_names"] = [c.get("name") for c in cases if c.find("skipped") is not None]
    return counts


def run_summary(run_dir: Path) -> dict | None:
    """The ``summary.json`` of the one trainer run under ``run_dir`` with its resolved flags (``args``), or None."""
    found = sorted(run_dir.rglob("summary.json")) if run_dir.exists() else []
    if not found:
        return None
    summary = json.loads(found[0].read_text())
    args_file = found[0].parent / "args.json"
    summary["args"] = json.loads(args_file.read_text())["args"] if args_file.exists() else {}
    return summary


def verdict(step: Step, out_dir: Path, mode: str) -> tuple[bool, str]:
    """Whether ``step`` passed, and why not (or a note)."""
    if step.status == "skip":
        return True, ""
    if step.status in TIMEOUT_CODES:
        return False, f"stopped at its {step.limit} s limit"
    if step.status != "0":
        return False, f"exit status {step.status}"
    if step.name == "tests":
        counts = test_counts(out_dir / "json" / "tests.xml")
        if counts is None:
            return False, "no JUnit file"
        if mode == "full" and counts["skipped"]:
            return False, f"{counts['skipped']} CUDA test(s) skipped on a CUDA machine"
    if step.name.startswith("run-") and run_summary(out_dir / "runs" / step.name[4:]) is None:
        return False, "no summary.json"
    return True, ""


def _fmt(value: float | None, digits: int = 2, suffix: str = "") -> str:
    return "-" if value is None else f"{value:.{digits}f}{suffix}"


def _target(value: float | None, target: float, mode: str) -> str:
    if mode != "full":
        return "n/a (smoke, CPU)"
    if value is None:
        return "not measured"
    return "met" if value <= target else "**not met**"


def variant_label(figures: dict) -> str:
    """``fp32``, ``bf16 + channels_last + compile``, ... of a ``bench.train_throughput`` figures file."""
    parts = ["fp32" if figures["amp"] == "off" else figures["amp"]]
    parts += [flag for flag in ("channels_last", "compile") if figures[flag]]
    return " + ".join(parts)


def throughput_figures(out_dir: Path) -> list[dict]:
    """Every ``json/throughput-*.json``, in the order the check ran them (file modification time)."""
    files = sorted((out_dir / "json").glob("throughput-*.json"), key=lambda p: p.stat().st_mtime)
    return [json.loads(p.read_text()) for p in files]


def build_report(out_dir: Path, mode: str) -> tuple[str, bool]:
    """The markdown report of the check in ``out_dir``, and whether every step passed."""
    steps = read_steps(out_dir)
    verdicts = {s.name: verdict(s, out_dir, mode) for s in steps}
    failed = [s.name for s in steps if not verdicts[s.name][0]]
    env_file = out_dir / "env.json"
    env = json.loads(env_file.read_text()) if env_file.exists() else {}
    lines = [f"# GPU check ({mode})", ""]
    lines.append(f"**{len(failed)} of {len(steps)} steps failed: {', '.join(failed)}**" if failed else
                 f"All {len(steps)} steps passed.")
    lines += ["", "## Environment", "", "| | |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in env.items()]

    lines += ["", "## Figures and their targets", "",
              "| figure | measured | target | verdict |", "|---|---|---|---|"]
    variants = throughput_figures(out_dir)
    if variants:
        best = min(variants, key=lambda f: f["epoch_50k_s"])
        label = f"{best['arch']}, {variant_label(best)}"
        lines.append(f"| 50k-image epoch, device-resident path (fastest variant: {label}) | "
                     f"{best['epoch_50k_s']:.2f} s | <= {EPOCH_TARGET_S:g} s on one H100 | "
                     f"{_target(best['epoch_50k_s'], EPOCH_TARGET_S, mode)} |")
        lines.append(f"| selection round / epoch ({label}) | {best['round_ratio']:.3f} | <= {ROUND_TARGET:g} | "
                     f"{_target(best['round_ratio'], ROUND_TARGET, mode)} |")
        lines.append(f"| device-resident path speed / DataLoader path speed ({label}) | {best['speedup']:.2f}x | "
                     f"measured | - |")
        for figures in variants:
            if figures["dividemix"]:
                dm = figures["dividemix"]
                lines.append(f"| DivideMix: 2 selection rounds / epoch ({variant_label(figures)}) | "
                             f"{dm['round_ratio']:.3f} | <= {ROUND_TARGET:g} | "
                             f"{_target(dm['round_ratio'], ROUND_TARGET, mode)} |")
    else:
        lines.append("| training throughput | not measured | | |")
    selector_file = out_dir / "json" / "selector.json"
    settings = json.loads(selector_file.read_text()) if selector_file.exists() else []
    for s in settings:
        gpu = "no GPU" if s["gpu_s"] is None else f"{s['gpu_s']:.4f} s GPU"
        lines.append(f"| fine_select N {s['n']:,} D {s['d']} C {s['c']}, s/round | {gpu}, {s['cpu_s']:.3f} s CPU | "
                     f"measured | - |")

    lines += ["", "## Steps", "", "| step | what | verdict | seconds | limit |", "|---|---|---|---|---|"]
    for s in steps:
        ok, note = verdicts[s.name]
        mark = ("SKIP" if s.status == "skip" else "PASS") if ok else "**FAIL**"
        lines.append(f"| {s.name} | {s.description} | {mark}{': ' + note if note else ''} | {s.seconds:.1f} | "
                     f"{s.limit} |")

    counts = test_counts(out_dir / "json" / "tests.xml")
    if counts is not None:
        passed = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
        lines += ["", "## CUDA tests", "", f"{passed} passed, {counts['failures'] + counts['errors']} failed, "
                  f"{counts['skipped']} skipped of {counts['tests']}."]
        lines += [f"- failed: {name}" for name in counts["failed"]]
        lines += [f"- skipped: {name}" for name in counts["skipped_names"][:20]]

    if variants:
        lines += ["", "## Training throughput", "",
                  "| arch, variant | N | DataLoader epoch s | device epoch s | speed-up | 50k epoch s | round s "
                  "(features + select) | round / epoch | DivideMix epoch s | its rounds / epoch | warm-up s |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for f in variants:
            dm = f["dividemix"] or {}
            lines.append(f"| {f['arch']}, {variant_label(f)} | {f['num_samples']:,} | {f['dataloader_epoch_s']:.2f} | "
                         f"{f['tensor_epoch_s']:.2f} | {f['speedup']:.2f}x | {f['epoch_50k_s']:.2f} | "
                         f"{f['round_s']:.2f} ({f['extract_s']:.2f} + {f['select_s']:.2f}) | {f['round_ratio']:.3f} | "
                         f"{_fmt(dm.get('epoch_s'))} | {_fmt(dm.get('round_ratio'), 3)} | {f['warmup_s']:.1f} |")
        if any(f["dividemix"] for f in variants):
            dm = next(f["dividemix"] for f in variants if f["dividemix"])
            lines.append(f"\nDivideMix epoch: 2 networks x {dm['steps_per_epoch']} MixMatch steps, timed over "
                         f"{dm['steps_timed']} steps each.")

    if settings:
        lines += ["", "## Selector (fine_select)", "",
                  "| N | D | C | CPU s/round | GPU s/round | GPU speed-up | GPU mask = CPU mask | peak extra GPU MiB |",
                  "|---|---|---|---|---|---|---|---|"]
        for s in settings:
            speedup = None if s["gpu_s"] is None else s["cpu_s"] / s["gpu_s"]
            agree = None if s["gpu_agree"] is None else 100 * s["gpu_agree"]
            lines.append(f"| {s['n']:,} | {s['d']} | {s['c']} | {s['cpu_s']:.3f} | {_fmt(s['gpu_s'], 4)} | "
                         f"{_fmt(speedup, 1, 'x')} | {_fmt(agree, 3, '%')} | {_fmt(s['gpu_extra_mib'], 1)} |")

    runs = [s for s in steps if s.name.startswith("run-")]
    if runs:
        lines += ["", "## Trainer runs (Fashion-MNIST)", "",
                  "| run | verdict | process s | training s | method | arch | amp | best test % | last test % | "
                  "selection F1 |", "|---|---|---|---|---|---|---|---|---|---|"]
        for s in runs:
            ok, note = verdicts[s.name]
            summary = run_summary(out_dir / "runs" / s.name[4:]) or {}
            args, selection = summary.get("args", {}), summary.get("selection") or {}
            mark = ("SKIP" if s.status == "skip" else "PASS") if ok else "**FAIL**"
            lines.append(f"| {s.name[4:]} | {mark}{': ' + note if note else ''} | {s.seconds:.1f} | "
                         f"{_fmt(summary.get('wall_time_s'), 1)} | {summary.get('label', '-')} | "
                         f"{summary.get('arch', '-')} | {args.get('amp', '-')} | {_fmt(summary.get('best_test_acc'))} "
                         f"| {_fmt(summary.get('last_test_acc'))} | {_fmt(selection.get('f1'), 3)} |")

    lines += real_cifar_lines(out_dir / "json" / "real-cifar.json")

    for s in steps:
        if not verdicts[s.name][0]:
            log = out_dir / "logs" / f"{s.name}.log"
            tail = log.read_text(errors="replace").splitlines()[-15:] if log.exists() else ["(no log)"]
            lines += ["", f"### {s.name}: end of logs/{s.name}.log", "", "```", *tail, "```"]
    return "\n".join(lines) + "\n", not failed


def real_cifar_lines(path: Path) -> list[str]:
    """The real-cifar step's figures (``bench.real_cifar_device``): the shortened recipe beside the published one,
    then test accuracy and seconds per epoch of standard training and FINE (none when the step did not run)."""
    if not path.exists():
        return []
    fig = json.loads(path.read_text())
    pub, short = fig["published"], fig["shortened"]
    runs = {r["method"]: r for r in fig["runs"]}
    lines = ["", "## Real CIFAR-10, sym 50%: the paper's recipe, shortened", "",
             f"Data unpacked in {fig['unpack']['seconds']} s ({fig['unpack']['train']:,} training images, "
             f"{short['val_size']:,} of them the noisy validation split, {fig['unpack']['test']:,} test).", "",
             "| | arch | epochs | warm-up | every | lr milestones (x0.01) | s / epoch standard | s / epoch FINE |",
             "|---|---|---|---|---|---|---|---|",
             f"| published recipe | {pub['arch']} | {pub['epochs']} | {pub['warmup']} | {pub['every']} | "
             f"{' '.join(map(str, pub['milestones']))} | | |"]
    speed = [_fmt(runs.get(m, {}).get("mean_epoch_s")) for m in ("standard", "fine")]
    lines.append(f"| this run | {pub['arch'] if not fig['smoke'] else 'small_cnn (smoke)'} | {short['epochs']} | "
                 f"{short['warmup']} | {short['every']} | {' '.join(map(str, short['milestones']))} | {speed[0]} | "
                 f"{speed[1]} |")
    projected = [f"{m} {r['mean_epoch_s'] * pub['epochs'] / 60:.1f} min" for m, r in runs.items()
                 if r.get("mean_epoch_s")]
    lines += ["", "Seconds per epoch: the mean from the second epoch on (the first includes the process's set-up). "
              f"At these speeds the published {pub['epochs']} epochs take: {', '.join(projected) or '-'}."]
    lines += ["", "| run | status | epochs done | rounds | last test % | best test % (val) | last selection P / R |",
              "|---|---|---|---|---|---|---|"]
    for r in fig["runs"]:
        sel = r.get("selection") or {}
        status = "finished" if r["finished"] else ("stopped at its limit" if r["status"] is None else
                                                   f"exit status {r['status']}")
        lines.append(f"| {r['method']} | {status} | {r['epochs_done']} / {r['epochs']} | {r['rounds']} | "
                     f"{_fmt(r['test_acc'][-1] if r['test_acc'] else None)} | {_fmt(r.get('best_test_acc'))} | "
                     f"{_fmt(sel.get('precision'), 3)} / {_fmt(sel.get('recall'), 3)} |")
    lines += ["", "| epoch | " + " | ".join(f"{m} test % | {m} s" for m in runs) + " |",
              "|---|" + "---|---|" * len(runs)]
    for e in range(max((len(r["test_acc"]) for r in runs.values()), default=0)):
        cells = []
        for r in runs.values():
            acc = r["test_acc"][e] if e < len(r["test_acc"]) else None
            sec = r["epoch_s"][e] if e < len(r["epoch_s"]) else None
            cells += [_fmt(acc), _fmt(sec)]
        lines.append(f"| {e} | " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    env = sub.add_parser("env", help="print the environment and save it as JSON")
    env.add_argument("path", type=Path, help="JSON file to write")
    report = sub.add_parser("report", help="write OUT_DIR/gpu_check.md; exit 1 if a step failed")
    report.add_argument("out_dir", type=Path, help="the folder bench/gpu_check.sh wrote")
    report.add_argument("--mode", type=str, default="full", choices=("full", "smoke"),
                        help="full: on a GPU, targets judged and skipped CUDA tests are failures; smoke: on the CPU")
    args = parser.parse_args(argv)
    if args.command == "env":
        info = environment()
        args.path.write_text(json.dumps(info, indent=1) + "\n")
        print("\n".join(f"{key}: {value}" for key, value in info.items()))
        return 0
    text, passed = build_report(args.out_dir, args.mode)
    (args.out_dir / "gpu_check.md").write_text(text)
    print(text)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
