"""Real CIFAR-10 on a lent GPU: a compact pack of the staged data to carry there, and the paper's CIFAR-10 sym 50
recipe for standard training and FINE on all 50,000 images, shortened to a few minutes.

    python -m bench.real_cifar_device pack --export EXPORT_DIR --cifar_n CIFAR-10_human.pt --out data/cifar10.npz
    python -m bench.real_cifar_device run --pack data/cifar10.npz --out OUT_DIR      # on the GPU (bench/gpu_check.sh)
    python -m bench.real_cifar_device run --pack data/cifar10.npz --out OUT_DIR --smoke   # toy size on the CPU

``pack`` keeps the export's JPEG files byte for byte (no second lossy step), in CIFAR-10's official training order
(rebuilt from CIFAR-10N's ``clean_label`` as ``bench.stage_cifar10`` does), concatenated into one uint8 array per split
with offsets, plus the test labels and every CIFAR-10N label set, in one ``np.savez_compressed`` file: about 18 MB for
the 60,000 images, against 180 MB for the decoded folder. ``run`` decodes it into a data folder
(``bench.stage_cifar10.write_cifar10_folder``; the same pixels as staging gives where Pillow's JPEG decoder is the
same), then runs ``python -m dynamic_selection.train`` with the paper's CIFAR-10 sym 50 recipe (ResNet-34, SGD 0.02,
wd 1e-3, batch 128, 45k/5k split) at ``--epochs`` epochs instead of 120, the lr milestones and the warm-up scaled
with them and selection rounds every ``--every`` epochs (at least two rounds), for ``standard`` then ``fine``; bf16,
channels_last and the device-resident data. Each run's wall time is capped (``--run_limit``); one that reaches the cap
is stopped and reported with the epochs it finished. It writes ``--json``: per run and epoch the test and validation
accuracy and the seconds the epoch took (from the trainer's epoch lines), beside the published recipe's values; the
GPU check's report (``bench.gpu_report``) renders it. Exit status 1 when a run failed, was cut short, or FINE made
fewer than two selection rounds.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

from fine.errors import UserError, run_cli

ROOT = Path(__file__).resolve().parent.parent
# The published CIFAR-10 sym 50 recipe of FINE (dynamic_selection/recipes.py, FO config_cifar10_cce_rn34.json).
PUBLISHED = {"arch": "resnet34", "epochs": 120, "lr": 0.02, "milestones": [40, 80], "gamma": 0.01, "batch_size": 128,
             "weight_decay": 1e-3, "val_size": 5000, "warmup": 40, "every": 10}
EPOCH_LINE = re.compile(r"^epoch\s+(\d+) ")


# --- pack and unpack --------------------------------------------------------------------------------------------------
def pack(export: str | os.PathLike, cifar_n: str | os.PathLike, out: str | os.PathLike, *,
         per_class: dict[str, int] | None = None) -> dict:
    """Write the export's JPEG bytes (training images in the official order) and CIFAR-10N's labels to ``out``.

    ``export`` and ``cifar_n`` are what ``bench.stage_cifar10`` stages from, checked the same way. Returns the
    counts and the file's size in bytes.
    """
    from bench import stage_cifar10 as stage

    per_class = per_class or stage.PER_CLASS
    human = stage.read_human_labels(Path(cifar_n), per_class["train"])
    train_files = stage.official_order(stage._split_files(Path(export), "train", per_class["train"]),
                                       human["clean_label"])
    test_files = [p for files in stage._split_files(Path(export), "test", per_class["test"]) for p in files]
    arrays = {}
    for split, files in (("train", train_files), ("test", test_files)):
        blobs = [p.read_bytes() for p in files]
        arrays[f"{split}_bytes"] = np.frombuffer(b"".join(blobs), dtype=np.uint8)
        arrays[f"{split}_offsets"] = np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64)
    arrays["test_labels"] = np.repeat(np.arange(len(stage.CLASSES)), per_class["test"]).astype(np.int64)
    arrays.update({f"human_{k}": v for k, v in human.items()})
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, out)
    return {"train": len(train_files), "test": len(test_files), "bytes": out.stat().st_size}


def _decode(data: np.ndarray, offsets: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Decode the images at ``indices`` of a packed split into (N, 3, 32, 32) uint8."""
    out = np.empty((len(indices), 32, 32, 3), dtype=np.uint8)
    for row, i in enumerate(indices):
        with Image.open(io.BytesIO(data[offsets[i]:offsets[i + 1]].tobytes())) as image:
            out[row] = np.asarray(image.convert("RGB"))
    return out.transpose(0, 3, 1, 2).copy()


def unpack(pack_file: str | os.PathLike, out: str | os.PathLike, *, train_per_class: int | None = None,
           test_per_class: int | None = None) -> dict:
    """Decode a pack into a CIFAR-10 data folder at ``out`` (``cifar-10-batches-py/`` and ``cifar-n/``).

    ``train_per_class`` / ``test_per_class`` keep a class-balanced subset (the first images of each class, in order),
    e.g. for a smoke run. Returns the counts and the seconds taken.
    """
    from bench.stage_cifar10 import write_cifar10_folder

    start = time.perf_counter()
    path = Path(pack_file)
    if not path.is_file():
        raise UserError(f"pack {path} not found; make it with: python -m bench.real_cifar_device pack --export DIR "
                        f"--cifar_n CIFAR-10_human.pt --out {path}")
    with np.load(path) as packed:
        arrays = {k: packed[k] for k in packed.files}
    clean, test_labels = arrays["human_clean_label"], arrays["test_labels"]

    def first(labels: np.ndarray, k: int | None) -> np.ndarray:
        if k is None:
            return np.arange(len(labels))
        return np.sort(np.concatenate([np.flatnonzero(labels == c)[:k] for c in range(10)]))

    train, test = first(clean, train_per_class), first(test_labels, test_per_class)
    human = {k.removeprefix("human_"): v[train] for k, v in arrays.items() if k.startswith("human_")}
    write_cifar10_folder(out, _decode(arrays["train_bytes"], arrays["train_offsets"], train), clean[train],
                         _decode(arrays["test_bytes"], arrays["test_offsets"], test), test_labels[test], human,
                         overwrite=True)
    return {"train": len(train), "test": len(test), "seconds": round(time.perf_counter() - start, 1)}


# --- the paper-recipe runs --------------------------------------------------------------------------------------------
def recipe_flags(epochs: int, warmup: int, every: int, smoke: bool) -> list[str]:
    """The trainer flags: the published recipe at ``epochs`` epochs (milestones at the same fractions of the run;
    smoke: the small CNN on the CPU, a tiny validation split)."""
    milestones = [round(m * epochs / PUBLISHED["epochs"]) for m in PUBLISHED["milestones"]]
    flags = ["--dataset", "cifar10", "--noise_kind", "sym", "--noise_rate", "0.5", "--epochs", str(epochs),
             "--milestones", *map(str, milestones), "--data_on_gpu", "on", "--amp", "bf16", "--channels_last"]
    if smoke:
        return flags + ["--device", "cpu", "--arch", "small_cnn", "--batch_size", "16", "--val_size", "20"]
    return flags + ["--device", "cuda"]


def timed_run(cmd: list[str], limit: float, log: Path) -> tuple[int | None, list[float]]:
    """Run ``cmd``, timestamping its epoch lines; kill it after ``limit`` seconds. Returns the exit status (None when
    killed) and the seconds each epoch took (the first counts from the process start: set-up included)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT))
    last = time.perf_counter()
    seconds = []
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT, env=env)
        timer = threading.Timer(limit, proc.kill)
        timer.start()
        try:
            for line in proc.stdout:
                f.write(line)
                if EPOCH_LINE.match(line):
                    now = time.perf_counter()
                    seconds.append(round(now - last, 2))
                    last = now
            status = proc.wait()
        finally:
            stopped = not timer.is_alive() and proc.returncode is not None and proc.returncode < 0
            timer.cancel()
    return (None if stopped else status), seconds


def run_report(method: str, run_root: Path, status: int | None, seconds: list[float], epochs: int) -> dict:
    """What one run did: per-epoch accuracies and seconds, its summary's figures where it finished."""
    metrics = next(run_root.glob("**/metrics.jsonl"), None)
    rows = [json.loads(line) for line in metrics.read_text().splitlines()] if metrics else []
    summary_path = next(run_root.glob("**/summary.json"), None)
    summary = json.loads(summary_path.read_text()) if summary_path else {}
    rounds = len(list(run_root.glob("**/selection/round_*.npz")))
    steady = seconds[1:] or seconds
    return {"method": method, "status": status, "finished": bool(summary.get("finished")), "epochs": epochs,
            "epochs_done": len(rows), "rounds": rounds, "test_acc": [round(r["test/acc"], 2) for r in rows],
            "val_acc": [None if r.get("val/acc") is None else round(r["val/acc"], 2) for r in rows],
            "epoch_s": seconds, "mean_epoch_s": round(sum(steady) / len(steady), 2) if steady else None,
            "best_test_acc": summary.get("best_test_acc"), "last_test_acc": summary.get("last_test_acc"),
            "selection": summary.get("selection")}


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    data = out / "cifar10"
    sizes = (20, 5) if args.smoke else (None, None)
    unpacked = unpack(args.pack, data, train_per_class=sizes[0], test_per_class=sizes[1])
    print(f"unpacked {unpacked['train']} training and {unpacked['test']} test images in {unpacked['seconds']} s",
          flush=True)
    report = {"published": PUBLISHED, "smoke": args.smoke, "unpack": unpacked,
              "shortened": {"epochs": args.epochs, "warmup": args.warmup, "every": args.every,
                            "val_size": 20 if args.smoke else PUBLISHED["val_size"],
                            "milestones": [round(m * args.epochs / PUBLISHED["epochs"])
                                           for m in PUBLISHED["milestones"]]},
              "runs": []}
    ok = True
    for method in ("standard", "fine"):
        run_root = out / "runs" / f"real-cifar-{method}"
        cmd = [sys.executable, "-m", "dynamic_selection.train", "--data_path", str(data), "--method", method,
               "--output", str(run_root), "--overwrite", "--seed", "1",
               *recipe_flags(args.epochs, args.warmup, args.every, args.smoke)]
        if method == "fine":
            cmd += ["--warmup", str(args.warmup), "--every", str(args.every)]
        status, seconds = timed_run(cmd, args.run_limit, out / "logs" / f"real-cifar-{method}.log")
        result = run_report(method, run_root, status, seconds, args.epochs)
        report["runs"].append(result)
        for pt in run_root.glob("**/*.pt"):
            pt.unlink()
        ok &= status == 0 and result["finished"] and (method != "fine" or result["rounds"] >= 2)
        print(f"{method}: status {status}, {result['epochs_done']}/{args.epochs} epochs, {result['rounds']} rounds, "
              f"test acc {result['test_acc']}, {result['mean_epoch_s']} s/epoch", flush=True)
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1))  # after each run: a step stopped later keeps it
    return 0 if ok else 1


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.real_cifar_device", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="JPEG export + CIFAR-10N labels -> one compressed .npz")
    p.add_argument("--export", type=str, required=True, help="ImageFolder export (train/<class>/, test/<class>/)")
    p.add_argument("--cifar_n", type=str, required=True, help="CIFAR-10N's CIFAR-10_human.pt")
    p.add_argument("--out", type=str, required=True, help="the .npz to write (e.g. data/cifar10.npz, ignored by git)")
    r = sub.add_parser("run", help="unpack, then standard and FINE with the shortened paper recipe")
    r.add_argument("--pack", type=str, required=True, help="the .npz written by pack")
    r.add_argument("--out", type=str, required=True, help="folder for the data, the runs and the logs")
    r.add_argument("--json", type=str, required=True, help="where to write the figures")
    r.add_argument("--epochs", type=int, default=18, help="epochs of each run (published: 120)")
    r.add_argument("--warmup", type=int, default=6, help="FINE's epochs before the first round (published: 40)")
    r.add_argument("--every", type=int, default=4, help="epochs between FINE's rounds (published: 10)")
    r.add_argument("--run_limit", type=float, default=130.0, help="seconds after which a run is stopped")
    r.add_argument("--smoke", action="store_true", help="20 + 5 images per class, the small CNN, on the CPU")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    if args.command == "pack":
        info = pack(args.export, args.cifar_n, args.out)
        print(f"packed {info['train']} training and {info['test']} test images into {args.out} "
              f"({info['bytes'] / 1e6:.1f} MB)")
        return 0
    if args.every < 1 or args.warmup + 2 * args.every >= args.epochs + args.every:
        raise UserError(f"--warmup {args.warmup} --every {args.every} --epochs {args.epochs} leave fewer than two "
                        f"selection rounds; shorten the warm-up or add epochs")
    return run(args)


if __name__ == "__main__":
    run_cli(lambda: sys.exit(main()))
