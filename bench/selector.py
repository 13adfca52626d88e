"""Benchmark one FINE selection round against the published recipe on synthetic penultimate features.

    python -m bench.selector                 # N=50k, D=512, C=10 and 100, plus a Clothing1M-sized round
    python -m bench.selector --skip-large    # without the 1M x 2048 round (8 GB of features)
    python -m bench.selector --skip-reference --json out.json   # CPU and GPU only, figures to a file

Features are ReLU(class prototype + Gaussian noise) with symmetric label noise. Per setting it prints the seconds per
round of ``fine.selection.fine_select`` (median over rounds after a warm-up round) and of the published recipe (full
SVD of each class's feature matrix, a per-sample Python loop for the scores, one scikit-learn GaussianMixture per
class with tol 1e-6 and max_iter 100; run once), their ratio, the agreement of the two clean masks, and the peak
memory each needs beyond the feature matrix. Where CUDA is present (and not ``--no-cuda``) ``fine_select`` is timed
on the GPU beside the CPU, with the agreement of the two masks.

Memory method: every measurement runs in a fresh subprocess that loads the libraries (a tiny warm-up selection),
builds the features, then resets the kernel's peak-RSS counter (``/proc/self/clear_refs``) and reads the peak
(``VmHWM``) after one round: extra = peak RSS during the round - RSS before it. This counts torch's, numpy's and
scikit-learn's allocations alike. On CUDA it is ``torch.cuda.max_memory_allocated`` beyond the feature matrix.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from fine.selection import fine_select, selection_metrics

MIB = 2 ** 20
_CHUNK = 65536


def make_features(n: int, d: int, c: int, noise: float, seed: int,
                  spread: float = 2.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Synthetic penultimate features, written in chunks so that the peak memory is the (n, d) matrix itself plus a
    chunk per thread; the chunks are drawn in parallel (torch's threads), each from its own seeded generator, so the
    result does not depend on the number of threads.

    Returns features (n, d) float32, noisy labels (n,), is_clean (n,) bool (symmetric noise, true class included).
    """
    g = torch.Generator().manual_seed(seed)
    prototypes = torch.relu(torch.randn(c, d, generator=g))
    true = torch.randint(0, c, (n,), generator=g)
    noisy = true.clone()
    flip = torch.rand(n, generator=g) < noise
    noisy[flip] = torch.randint(0, c, (int(flip.sum()),), generator=g)
    features = torch.empty(n, d)

    def fill(start: int) -> None:
        rows = true[start:start + _CHUNK]
        chunk = torch.Generator().manual_seed(seed * 1_000_003 + start)
        features[start:start + len(rows)] = torch.relu(prototypes[rows] + spread * torch.randn(len(rows), d,
                                                                                              generator=chunk))
    with ThreadPoolExecutor(torch.get_num_threads()) as pool:
        list(pool.map(fill, range(0, n, _CHUNK)))
    return features, noisy, noisy == true


def published_round(features: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """The published recipe: full SVD per class, per-sample score loop, one sklearn GMM per class -> clean mask."""
    from sklearn.mixture import GaussianMixture
    vectors = {}
    for k in range(num_classes):
        _, _, v = np.linalg.svd(features[labels == k])
        vectors[k] = v[0]
    scores = np.array([np.abs(np.inner(vectors[labels[i]], z / np.linalg.norm(z))) for i, z in enumerate(features)])
    clean = np.zeros(len(labels), dtype=bool)
    for k in range(num_classes):
        members = labels == k
        gmm = GaussianMixture(n_components=2, covariance_type="full", tol=1e-6, max_iter=100)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gmm.fit(scores[members].reshape(-1, 1))
        prob = gmm.predict_proba(scores[members].reshape(-1, 1))[:, gmm.means_.argmax()]
        clean[members] = prob > 0.5
    return clean


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _probe(kind: str, n: int, d: int, c: int, noise: float, seed: int, rounds: int, device: str,
           out: mp.Queue) -> None:
    """Subprocess body: time ``kind`` ("fine" or "published") and measure its peak extra memory."""
    small, small_labels, _ = make_features(2000, 32, 4, noise, seed)
    fine_select(small, small_labels, 4)  # load libraries and kernels before measuring
    features, labels, is_clean = make_features(n, d, c, noise, seed)
    feature_bytes = features.numel() * 4
    if kind == "published":
        x, y = features.numpy(), labels.numpy()
        rss0, exact = _status_kib("VmRSS"), _reset_peak()
        t0 = time.perf_counter()
        mask = published_round(x, y, c)
        seconds = [time.perf_counter() - t0]
        extra = (_status_kib("VmHWM") - rss0) * 1024 if exact else None
    elif device == "cuda":
        features, labels = features.cuda(), labels.cuda()
        torch.cuda.reset_peak_memory_stats()
        seconds = []
        for _ in range(rounds + 1):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            sel = fine_select(features, labels, c)
            torch.cuda.synchronize()
            seconds.append(time.perf_counter() - t0)
        seconds = seconds[1:]
        extra = torch.cuda.max_memory_allocated() - feature_bytes - labels.numel() * 8
        mask = sel.clean_mask.cpu().numpy()
    else:
        rss0, exact = _status_kib("VmRSS"), _reset_peak()
        seconds = []
        for r in range(rounds + 1):
            t0 = time.perf_counter()
            sel = fine_select(features, labels, c)
            seconds.append(time.perf_counter() - t0)
            if r == 0:
                extra = (_status_kib("VmHWM") - rss0) * 1024 if exact else None
        seconds = seconds[1:]
        mask = sel.clean_mask.numpy()
    f1 = selection_metrics(mask, is_clean.numpy())["f1"]
    out.put({"seconds": seconds, "extra": extra, "feature_bytes": feature_bytes, "mask": mask, "f1": f1})


def measure(kind: str, n: int, d: int, c: int, args: argparse.Namespace, device: str = "cpu") -> dict:
    """Run one probe in a fresh process and return its result."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_probe, args=(kind, n, d, c, args.noise, args.seed, args.rounds, device, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def _memory(result: dict) -> str:
    if result["extra"] is None:
        return "peak extra memory n/a (/proc/self/clear_refs not writable)"
    return (f"peak extra memory {result['extra'] / MIB:.1f} MiB "
            f"({result['extra'] / result['feature_bytes']:.2f}x the feature matrix)")


def report(n: int, d: int, c: int, args: argparse.Namespace, reference: bool) -> dict:
    """Measure and print one setting; returns its figures (seconds per round on the CPU and, where CUDA is present
    and not ``--no-cuda``, on the GPU; the published recipe's with ``reference``)."""
    print(f"\nN={n:,} D={d} C={c} (sym noise {args.noise}, features {n * d * 4 / MIB:,.0f} MiB, "
          f"torch threads {torch.get_num_threads()})", flush=True)
    ours = measure("fine", n, d, c, args)
    t_ours = statistics.median(ours["seconds"])
    figures = {"n": n, "d": d, "c": c, "cpu_s": t_ours, "cpu_f1": ours["f1"], "reference_s": None,
               "reference_agree": None, "gpu_s": None, "gpu_agree": None, "gpu_extra_mib": None}
    print(f"  fine_select (CPU):  {t_ours:.3f} s/round (median of {len(ours['seconds'])} after a warm-up; "
          f"all: {', '.join(f'{s:.3f}' for s in ours['seconds'])}), {_memory(ours)}; F1 vs true clean "
          f"{ours['f1']:.4f}", flush=True)
    if reference:
        ref = measure("published", n, d, c, args)
        t_ref = ref["seconds"][0]
        agree = (ours["mask"] == ref["mask"]).mean()
        figures.update(reference_s=t_ref, reference_agree=float(agree))
        print(f"  published recipe:   {t_ref:.3f} s/round (one run), {_memory(ref)}; F1 vs true clean "
              f"{ref['f1']:.4f}")
        print(f"  speed-up {t_ref / t_ours:.1f}x; clean masks agree on {100 * agree:.3f}% of samples", flush=True)
    if args.cuda and torch.cuda.is_available():
        gpu = measure("fine", n, d, c, args, device="cuda")
        t_gpu = statistics.median(gpu["seconds"])
        agree = (gpu["mask"] == ours["mask"]).mean()
        figures.update(gpu_s=t_gpu, gpu_agree=float(agree), gpu_extra_mib=gpu["extra"] / MIB)
        print(f"  fine_select (CUDA): {t_gpu:.4f} s/round ({t_ours / t_gpu:.1f}x the CPU), peak extra GPU memory "
              f"{gpu['extra'] / MIB:.1f} MiB; masks agree with CPU on {100 * agree:.3f}%", flush=True)
    return figures


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_samples", type=int, default=50_000, help="N of the standard settings")
    parser.add_argument("--dim", type=int, default=512, help="feature dimension D of the standard settings")
    parser.add_argument("--classes", type=int, nargs="*", default=[10, 100],
                        help="C values of the standard settings (none: only the large round)")
    parser.add_argument("--noise", type=float, default=0.5, help="symmetric label-noise rate of the synthetic labels")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds of fine_select after the warm-up round")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic features and labels")
    parser.add_argument("--skip-reference", action="store_true", help="do not run the published recipe")
    parser.add_argument("--skip-large", action="store_true",
                        help="skip the Clothing1M-sized round (--large; 8 GB of features by default)")
    parser.add_argument("--large", type=int, nargs=3, default=[1_000_000, 2048, 14], metavar=("N", "D", "C"),
                        help="size of the Clothing1M-sized round (2 timed rounds, no published recipe)")
    parser.add_argument("--no-cuda", dest="cuda", action="store_false", help="skip the CUDA timings")
    parser.add_argument("--json", type=str, default=None, help="also write every setting's figures to this file")
    return parser


def main() -> None:
    args = get_args_parser().parse_args()
    settings = [report(args.num_samples, args.dim, c, args, reference=not args.skip_reference) for c in args.classes]
    if not args.skip_large:
        large = argparse.Namespace(**{**vars(args), "rounds": 2})
        settings.append(report(*args.large, large, reference=False))
    if args.json:
        Path(args.json).write_text(json.dumps(settings, indent=1) + "\n")


if __name__ == "__main__":
    main()
