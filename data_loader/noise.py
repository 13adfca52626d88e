"""Synthetic label noise: seeded pure generators, a summary, and the saved label files every run reuses.

Every generator draws from a local ``np.random.default_rng(seed)``, so the same ``(labels, kind, rate, seed)`` always
gives the same noisy labels. :func:`load_or_make_noisy_labels` saves them once under ``<root>/noisy_labels/`` (or, for
a data folder that cannot be written, under the user's cache: :func:`label_cache_root`) and every later run (any
method, any trainer) reads the same file back.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

from fine.atomic import atomic_write
from fine.errors import UserError

# human: CIFAR-N (data_loader/cifar_n.py); real: the labels Clothing1M and WebVision come with.
NOISE_KINDS = ("none", "sym", "asym", "pairflip", "instance", "human", "real")

# Asymmetric maps, source class -> noisy class. CIFAR-10: truck->automobile, bird->airplane, cat<->dog, deer->horse.
CIFAR10_ASYM = {9: 1, 2: 0, 3: 5, 5: 3, 4: 7}
# Digits: pairs a hand-written digit is commonly mistaken for (1<->7, 3<->8, 5->6, 9->4); 0, 2, 4, 6 keep their label.
DIGITS_ASYM = {1: 7, 7: 1, 3: 8, 8: 3, 5: 6, 9: 4}
# Fashion-MNIST (0 T-shirt/top, 1 Trouser, 2 Pullover, 3 Dress, 4 Coat, 5 Sandal, 6 Shirt, 7 Sneaker, 8 Bag,
# 9 Ankle boot): each source goes to the class it is most often mistaken for, read off the test-set confusion matrix of
# a pixel-space 5-NN (50 principal components; per 1000 images of the true class): Shirt->T-shirt 165, T-shirt->Shirt
# 116, Coat->Pullover 113, Pullover->Coat 107, Sandal->Sneaker 62, Sneaker->Ankle boot 47. As on CIFAR-10, each target
# has one source and some classes never flip: Trouser and Bag (rarely mistaken), Dress and Ankle boot (their top
# confusions, T-shirt 42 and Sneaker 36, would give those targets a second source).
FASHION_MNIST_ASYM = {0: 6, 6: 0, 2: 4, 4: 2, 5: 7, 7: 9}
ASYM_DATASETS = ("cifar10", "cifar100", "digits", "fashion_mnist")

INSTANCE_RATE_STD = 0.1  # std of the per-sample flip rate q_i ~ N(r, 0.1^2) truncated to [0, 1] (Xia et al. 2020)
_INSTANCE_CHUNK = 4096  # samples per chunk of the instance-noise projection, bounding its memory


def asym_class_map(dataset: str | None, num_classes: int) -> np.ndarray:
    """Target class of every source class under asymmetric noise.

    Parameters
    ----------
    dataset : one of ``ASYM_DATASETS``.
    num_classes : K; must equal the dataset's class count.

    Returns
    -------
    np.ndarray (K,) int64
        ``m[c]`` is the class that flipped samples of class ``c`` receive; ``m[c] == c`` for classes that never flip.
        CIFAR-100 uses 20 blocks of 5 consecutive ids: ``c`` goes to the next id of its block, the last wrapping to the
        first (``4 -> 0``).
    """
    expected = {"cifar10": 10, "cifar100": 100, "digits": 10, "fashion_mnist": 10}
    if dataset not in expected:
        raise UserError(f"asym noise has no class map for dataset {dataset!r}; use one of {', '.join(ASYM_DATASETS)} "
                        f"or --noise_kind sym/pairflip/instance")
    if num_classes != expected[dataset]:
        raise UserError(f"the {dataset} asym map needs {expected[dataset]} classes, got num_classes={num_classes}")
    classes = np.arange(num_classes, dtype=np.int64)
    if dataset == "cifar100":
        return classes // 5 * 5 + (classes + 1) % 5
    mapping = {"cifar10": CIFAR10_ASYM, "digits": DIGITS_ASYM, "fashion_mnist": FASHION_MNIST_ASYM}[dataset]
    target = classes.copy()
    target[list(mapping)] = list(mapping.values())
    return target


def _check_labels(labels: np.ndarray, num_classes: int, what: str, fix: str) -> np.ndarray:
    """Return ``labels`` as a 1-D int64 array, or raise a one-line UserError saying what is wrong and ``fix``."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise UserError(f"{what} must be a 1-D integer array, got shape {labels.shape} dtype {labels.dtype}; {fix}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise UserError(f"{what} has labels in [{labels.min()}, {labels.max()}], outside [0, {num_classes}); {fix}")
    return labels.astype(np.int64)


def _check_kind_rate(kind: str, rate: float) -> None:
    if kind not in NOISE_KINDS:
        raise UserError(f"unknown noise kind {kind!r}; use one of {', '.join(NOISE_KINDS)}")
    if kind in ("human", "real"):
        raise UserError(f"{kind} noise is read from the dataset's label files, not generated; pass "
                        f"noise_kind='{kind}' to data_loader.build_datasets")
    if not 0.0 <= rate <= 1.0:
        raise UserError(f"noise rate {rate} is outside [0, 1]; pass a fraction such as 0.5")


def _truncated_normal(rng: np.random.Generator, mean: float, std: float, size: int) -> np.ndarray:
    """``size`` draws of N(mean, std^2) restricted to [0, 1], by vectorised rejection (acceptance >= ~50%)."""
    out = rng.normal(mean, std, size)
    bad = (out < 0) | (out > 1)
    while bad.any():
        out[bad] = rng.normal(mean, std, int(bad.sum()))
        bad = (out < 0) | (out > 1)
    return out


def _instance_noise(clean: np.ndarray, inputs: np.ndarray, rate: float, num_classes: int,
                    rng: np.random.Generator) -> np.ndarray:
    """Instance-dependent noise of Xia et al. (2020); see :func:`make_noisy_labels`. Memory is O(chunk * D + D K^2)."""
    n = len(clean)
    flat = inputs.reshape(n, -1)
    dim = flat.shape[1]
    # Per-dimension standardisation over the data set, accumulated in chunks (constant dimensions become 0).
    total = np.zeros(dim)
    total_sq = np.zeros(dim)
    for start in range(0, n, _INSTANCE_CHUNK):
        block = flat[start:start + _INSTANCE_CHUNK].astype(np.float64)
        total += block.sum(0)
        total_sq += np.square(block).sum(0)
    mean = total / n
    std = np.sqrt(np.maximum(total_sq / n - mean ** 2, 0.0))
    std[std < 1e-12] = np.inf

    flip_rate = _truncated_normal(rng, rate, INSTANCE_RATE_STD, n)  # q_i
    # W ~ N(0, 1) drawn as (D, K, K) with W_y = W[:, y, :]; stored class-major, (K, D, K), for contiguous W_y.
    weights = rng.standard_normal((dim, num_classes, num_classes), dtype=np.float32)
    per_class = np.ascontiguousarray(weights.transpose(1, 0, 2))
    del weights
    uniform = rng.random(n)
    noisy = np.empty(n, dtype=np.int64)
    for start in range(0, n, _INSTANCE_CHUNK):
        stop = min(start + _INSTANCE_CHUNK, n)
        x = ((flat[start:stop] - mean) / std).astype(np.float32)  # (B, D)
        y = clean[start:stop]
        logits = np.empty((stop - start, num_classes), dtype=np.float64)  # (B, K): x_i . W_{y_i}
        for c in np.unique(y):
            rows = y == c
            logits[rows] = x[rows] @ per_class[c]
        rows = np.arange(stop - start)
        logits[rows, y] = -np.inf
        logits -= logits.max(1, keepdims=True)
        probs = np.exp(logits)
        probs *= (flip_rate[start:stop] / probs.sum(1))[:, None]
        probs[rows, y] = 1.0 - flip_rate[start:stop]
        # Inverse-CDF draw of one label per row.
        drawn = (probs.cumsum(1) < uniform[start:stop, None]).sum(1)
        noisy[start:stop] = np.minimum(drawn, num_classes - 1)
    return noisy


def make_noisy_labels(clean_labels: np.ndarray, kind: str, rate: float, *, num_classes: int, seed: int,
                      dataset: str | None = None, inputs: np.ndarray | None = None) -> np.ndarray:
    """Corrupt ``clean_labels`` with synthetic label noise; a pure function of its arguments.

    Meaning of ``rate`` (r) for each ``kind``; N samples, K classes, n_c samples of class c:

    - ``none``: no noise; the clean labels are returned.
    - ``sym``: exactly ``round(r * N)`` samples, chosen uniformly, get a label drawn uniformly from all K classes, the
      true class included, so the realised flip rate is about ``r * (K - 1) / K``.
    - ``asym``: for every source class c of the dataset's map (:func:`asym_class_map`), exactly ``round(r * n_c)``
      samples of c, chosen uniformly, get the mapped class; other classes keep their labels. Maps: CIFAR-10 9->1, 2->0,
      3->5, 5->3, 4->7; CIFAR-100 next id within blocks of 5 consecutive ids; digits 1->7, 7->1, 3->8, 8->3, 5->6, 9->4;
      Fashion-MNIST 0->6, 6->0, 2->4, 4->2, 5->7, 7->9.
    - ``pairflip``: each sample independently becomes ``(y + 1) mod K`` with probability r.
    - ``instance`` (Xia et al. 2020): sample i flips with its own probability q_i ~ N(r, 0.1^2) truncated to [0, 1], so
      the mean flip rate is r (slightly pulled towards 0.5 within ~0.1 of the ends). The inputs are flattened and
      standardised per dimension over the data set; with W ~ N(0, 1) of shape (D, K, K), p = x_i W[:, y_i, :],
      p_y = -inf, p = q_i softmax(p), p_y = 1 - q_i, and the noisy label is drawn from p: where a sample flips to
      depends on its input.

    Parameters
    ----------
    clean_labels : (N,) int array with values in [0, K).
    kind : one of ``NOISE_KINDS``.
    rate : r in [0, 1]; ``rate == 0`` returns the clean labels.
    num_classes : K.
    seed : seed of the local generator ``np.random.default_rng(seed)``.
    dataset : dataset name, needed by ``asym`` to pick its map.
    inputs : (N, ...) array of the samples, needed by ``instance``.

    Returns
    -------
    np.ndarray (N,) int64
        The noisy labels (a new array).
    """
    _check_kind_rate(kind, rate)
    clean = _check_labels(clean_labels, num_classes, "clean_labels", "pass the dataset's integer class ids")
    noisy = clean.copy()
    if kind == "none" or rate == 0:
        return noisy
    rng = np.random.default_rng(seed)
    n = len(clean)
    if kind == "sym":
        chosen = rng.choice(n, size=round(rate * n), replace=False)
        noisy[chosen] = rng.integers(0, num_classes, size=len(chosen))
    elif kind == "asym":
        target = asym_class_map(dataset, num_classes)
        for c in np.flatnonzero(target != np.arange(num_classes)):
            members = np.flatnonzero(clean == c)
            noisy[rng.choice(members, size=round(rate * len(members)), replace=False)] = target[c]
    elif kind == "pairflip":
        flip = rng.random(n) < rate
        noisy[flip] = (clean[flip] + 1) % num_classes
    else:
        if inputs is None:
            raise UserError("instance noise needs the training inputs; pass inputs=<(N, ...) array of the samples>")
        inputs = np.asarray(inputs)
        if len(inputs) != n:
            raise UserError(f"instance noise got {len(inputs)} inputs for {n} labels; pass one input per label")
        noisy = _instance_noise(clean, inputs, rate, num_classes, rng)
    return noisy


def noise_summary(clean: np.ndarray, noisy: np.ndarray, num_classes: int) -> dict:
    """Realised noise of a label set.

    Parameters
    ----------
    clean, noisy : (N,) int arrays with values in [0, K).
    num_classes : K.

    Returns
    -------
    dict
        ``noise_rate``: fraction of samples whose noisy label differs from the clean one; ``transition_matrix``:
        K x K list of lists, row c = distribution of noisy labels among samples of clean class c (all zeros for an
        empty class); ``num_samples``: N.
    """
    clean = np.asarray(clean, dtype=np.int64)
    noisy = np.asarray(noisy, dtype=np.int64)
    counts = np.bincount(clean * num_classes + noisy, minlength=num_classes ** 2).reshape(num_classes, num_classes)
    rows = counts.sum(1, keepdims=True)
    matrix = counts / np.maximum(rows, 1)
    return {"noise_rate": float((clean != noisy).mean()) if len(clean) else 0.0,
            "transition_matrix": np.round(matrix, 6).tolist(), "num_samples": int(len(clean))}


def _load_label_file(path: Path, n: int, num_classes: int, dataset: str, fix: str) -> np.ndarray:
    """Read a ``.npy`` label file and check it fits ``n`` samples of ``num_classes`` classes."""
    try:
        labels = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise UserError(f"cannot read label file {path} ({err}); {fix}") from None
    if labels.shape != (n,):
        raise UserError(f"label file {path} holds shape {labels.shape} but the {dataset} training set has {n} samples; "
                        f"{fix}")
    return _check_labels(labels, num_classes, f"label file {path}", fix)


def noisy_label_path(root: str | os.PathLike, dataset: str, kind: str, rate: float, seed: int) -> Path:
    """``<root>/noisy_labels/<dataset>_<kind>_<rate>_seed<seed>.npy``, the saved labels of one noise setting."""
    return Path(root) / "noisy_labels" / f"{dataset}_{kind}_{rate:g}_seed{seed}.npy"


def label_cache_root(root: str | os.PathLike) -> Path:
    """Where the labels of a data folder that cannot be written go: ``<cache>/fine/<absolute root>``.

    ``<cache>`` is ``$XDG_CACHE_HOME``, else ``~/.cache``. Mirroring the data folder's absolute path gives every data
    folder its own labels (two user data sets never share a file), e.g. ``/usr/share/datasets/fashion-mnist`` ->
    ``~/.cache/fine/usr/share/datasets/fashion-mnist/noisy_labels/``.
    """
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    absolute = Path(root).resolve()
    return cache / "fine" / absolute.relative_to(absolute.anchor)


def _writable(folder: Path) -> bool:
    """Whether ``folder`` can be written, or created: its nearest existing ancestor grants write access."""
    folder = folder.absolute()
    while not folder.exists():
        folder = folder.parent
    return os.access(folder, os.W_OK)


def _label_file(root: str | os.PathLike, dataset: str, kind: str, rate: float, seed: int) -> Path:
    """The saved labels of one setting: under ``root`` if the file is there, else under :func:`label_cache_root` if
    the file is there, else under ``root`` if it can be written, else under the cache."""
    path = noisy_label_path(root, dataset, kind, rate, seed)
    if path.exists():
        return path
    cached = noisy_label_path(label_cache_root(root), dataset, kind, rate, seed)
    return cached if cached.exists() or not _writable(path.parent) else path


def load_or_make_noisy_labels(clean_labels: np.ndarray, *, dataset: str, kind: str, rate: float, seed: int,
                              num_classes: int, root: str | os.PathLike, inputs: np.ndarray | None = None,
                              noise_file: str | os.PathLike | None = None) -> tuple[np.ndarray, dict]:
    """The noisy labels of a training set: read from ``noise_file``, from the saved file, or made and saved.

    Labels made here are saved at :func:`noisy_label_path` with a ``.json`` beside them (kind, rate, seed,
    ``num_samples``, ``num_classes``, realised ``noise_rate``, ``transition_matrix``), both written atomically, and
    read back by every later call with the same arguments. A saved or supplied file that does not fit the data set
    (length, label range) is refused.

    A data folder that cannot be written (a system package's ``/usr/share/datasets/...``, a read-only mount) is left
    untouched: its labels are saved under :func:`label_cache_root` instead, with a note on stderr, and read back from
    there. Labels already saved under ``<root>/noisy_labels/`` are always read from there.

    Parameters
    ----------
    clean_labels : (N,) int array, the training set in its standard order.
    dataset, kind, rate, seed, num_classes, inputs : as in :func:`make_noisy_labels`.
    root : data folder; the labels go to ``<root>/noisy_labels/`` (the cache if it cannot be written).
    noise_file : a user's ``.npy`` file of N labels aligned with the standard order; ``kind``/``rate`` are then ignored.

    Returns
    -------
    labels : np.ndarray (N,) int64
    info : dict
        ``kind``, ``rate``, ``seed``, ``label_file`` (str or None), ``noise_rate`` (realised on the N samples) and
        ``reused`` (the labels came from an existing file).
    """
    _check_kind_rate(kind, rate)
    clean = _check_labels(clean_labels, num_classes, "clean_labels", "pass the dataset's integer class ids")
    n = len(clean)
    if noise_file is not None:
        path = Path(noise_file)
        if path.suffix != ".npy" or not path.is_file():
            raise UserError(f"--noise_file {path} is not an existing .npy file; save the labels with numpy.save")
        labels = _load_label_file(path, n, num_classes, dataset,
                                  "pass a .npy file of integer labels aligned with the standard training order")
        info = {"kind": "file", "rate": None, "seed": None, "label_file": str(path), "reused": True}
    elif kind == "none" or rate == 0:
        labels = clean.copy()
        info = {"kind": "none", "rate": 0.0, "seed": seed, "label_file": None, "reused": False}
    else:
        path = _label_file(root, dataset, kind, rate, seed)
        meta_path = path.with_suffix(".json")
        reused = path.exists()
        in_cache = path != noisy_label_path(root, dataset, kind, rate, seed)
        if in_cache and not reused and os.environ.get("RANK", "0") == "0":  # torchrun's rank: one note per run
            print(f"note: {Path(root)} cannot be written, so the noisy labels are saved to {path} and later runs read "
                  f"them from there", file=sys.stderr)
        if reused:
            labels = _load_label_file(path, n, num_classes, dataset, "delete it to regenerate the labels")
        else:
            labels = make_noisy_labels(clean, kind, rate, num_classes=num_classes, seed=seed, dataset=dataset,
                                       inputs=inputs)
        if not reused or (not meta_path.exists() and _writable(meta_path.parent)):
            path.parent.mkdir(parents=True, exist_ok=True)
            meta = {"dataset": dataset, "kind": kind, "rate": rate, "seed": seed, "num_samples": n,
                    "num_classes": num_classes, **noise_summary(clean, labels, num_classes)}
            atomic_write(meta_path, lambda f: f.write(json.dumps(meta).encode()))
        if not reused:
            # The .npy is written last, so its presence means the labels and their summary are complete.
            atomic_write(path, lambda f: np.save(f, labels))
        info = {"kind": kind, "rate": rate, "seed": seed, "label_file": str(path), "reused": reused}
    info["noise_rate"] = float((labels != clean).mean()) if n else 0.0
    return labels, info
