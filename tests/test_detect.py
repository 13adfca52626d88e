"""Tests of ``python -m engine.detect`` on synthetic features with a known set of mislabelled samples."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine import detect


def synthetic(tmp_path: Path, *, n: int = 400, k: int = 4, d: int = 32, noise: float = 0.2, seed: int = 0) -> dict:
    """Features along one direction per true class (plus small noise); ``noise`` of the labels point elsewhere."""
    rng = np.random.default_rng(seed)
    directions = np.linalg.qr(rng.standard_normal((d, k)))[0].T  # (k, d) orthonormal
    clean = rng.permutation(np.arange(n) % k)
    feats = directions[clean] * rng.uniform(1, 3, (n, 1)) + 0.05 * rng.standard_normal((n, d))
    noisy = clean.copy()
    flip = rng.choice(n, int(noise * n), replace=False)
    noisy[flip] = (clean[flip] + rng.integers(1, k, len(flip))) % k
    paths = {}
    for name, arr in (("features", feats.astype(np.float32)), ("labels", noisy), ("clean", clean)):
        paths[name] = tmp_path / f"{name}.npy"
        np.save(paths[name], arr)
    return {"paths": paths, "clean": clean, "noisy": noisy}


def test_detect_finds_the_mislabelled_samples(tmp_path, capsys):
    data = synthetic(tmp_path)
    p = data["paths"]
    out = tmp_path / "out"
    summary = detect.main(["--features", str(p["features"]), "--labels", str(p["labels"]), "--out", str(out),
                           "--clean_labels", str(p["clean"])])
    is_clean = data["clean"] == data["noisy"]
    indices = np.load(out / "clean_indices.npy")
    assert indices.dtype == np.int64 and np.all(np.diff(indices) > 0)
    selected = np.zeros(len(is_clean), dtype=bool)
    selected[indices] = True
    precision = (selected & is_clean).sum() / selected.sum()
    recall = (selected & is_clean).sum() / is_clean.sum()
    assert precision >= 0.95 and recall >= 0.95
    scores, prob = np.load(out / "scores.npy"), np.load(out / "clean_prob.npy")
    assert scores.shape == prob.shape == (400,) and scores.dtype == prob.dtype == np.float32
    assert scores[is_clean].mean() > scores[~is_clean].mean()
    written = json.loads((out / "summary.json").read_text())
    assert written == summary
    assert written["num_samples"] == 400 and written["selected"] == len(indices) and written["num_classes"] == 4
    assert written["selection"]["precision"] == pytest.approx(precision)
    assert written["selection"]["recall"] == pytest.approx(recall)
    assert set(written["selection"]) >= {"f1", "specificity", "accuracy"}
    assert written["options"] == {"fit": "gmm", "p_threshold": 0.5, "score": "abs", "vector": "eigen"}
    assert "precision" in capsys.readouterr().out


@pytest.mark.parametrize("options", [["--fit", "kmeans"], ["--fit", "bmm", "--score", "squared"],
                                     ["--vector", "mean", "--num_classes", "6"]])
def test_detect_options_without_clean_labels(tmp_path, capsys, options):
    data = synthetic(tmp_path)
    p = data["paths"]
    summary = detect.main(["--features", str(p["features"]), "--labels", str(p["labels"]), "--out",
                           str(tmp_path / "out"), *options])
    assert summary["selection"] == "clean labels: not given"
    assert "clean labels: not given" in capsys.readouterr().out
    selected = np.load(tmp_path / "out" / "clean_indices.npy")
    is_clean = data["clean"] == data["noisy"]
    assert is_clean[selected].mean() >= 0.95


def _bad_inputs(tmp_path: Path) -> dict:
    data = synthetic(tmp_path, n=40)
    p = data["paths"]
    feats = np.load(p["features"])
    arrays = {"feat3d": feats[:, :, None], "short": data["noisy"][:30], "float_labels": data["noisy"] * 1.0,
              "neg": data["noisy"] - 1, "nan": np.where(np.arange(40)[:, None] == 3, np.nan, feats),
              "clean_short": data["clean"][:39]}
    for name, arr in arrays.items():
        np.save(tmp_path / f"{name}.npy", arr)
    return {name: str(tmp_path / f"{name}.npy") for name in [*arrays, "features", "labels", "clean"]}


@pytest.mark.parametrize("features,labels,extra,message", [
    ("missing", "labels", [], "does not exist"),
    ("feat3d", "labels", [], "2-D (N, D)"),
    ("features", "short", [], "--features has 40 rows but --labels has 30 entries"),
    ("features", "float_labels", [], "integer class ids"),
    ("features", "neg", [], "negative labels"),
    ("features", "labels", ["--num_classes", "2"], ">= --num_classes 2"),
    ("nan", "labels", [], "NaN or Inf"),
    ("features", "labels", ["--clean_labels", "clean_short"], "--clean_labels holds shape (39,)"),
])
def test_bad_inputs_are_one_line_errors(tmp_path, features, labels, extra, message):
    files = _bad_inputs(tmp_path)
    files["missing"] = str(tmp_path / "nope.npy")
    extra = [files.get(x, x) for x in extra]
    with pytest.raises(detect.UserError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        detect.main(["--features", files[features], "--labels", files[labels], "--out", str(tmp_path / "o"),
                     *extra])
    assert "\n" not in str(err.value)


def test_command_line_runs_and_fails_with_exit_code_2(tmp_path):
    files = _bad_inputs(tmp_path)
    root = Path(__file__).resolve().parents[1]
    ok = subprocess.run([sys.executable, "-m", "engine.detect", "--features", files["features"], "--labels",
                         files["labels"], "--out", str(tmp_path / "o")], cwd=root, capture_output=True, text=True)
    assert ok.returncode == 0 and (tmp_path / "o" / "summary.json").exists()
    bad = subprocess.run([sys.executable, "-m", "engine.detect", "--features", files["features"], "--labels",
                          files["short"], "--out", str(tmp_path / "o2")], cwd=root, capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == ["error: --features has 40 rows but --labels has 30 entries "
                                               "(shape (30,)); pass one label per feature row"]
