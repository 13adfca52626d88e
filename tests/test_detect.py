"""Tests of ``python -m engine.detect`` on synthetic features with a known set of mislabelled samples."""
from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits

from dynamic_selection import train as ds
from engine import detect
from tests.test_user_data import signals


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


def issues(out: Path) -> list[dict]:
    """``label_issues.csv`` as dicts of numbers, in file order."""
    with (out / "label_issues.csv").open() as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def test_detect_ranks_the_mislabelled_samples_first_and_suggests_their_true_labels(tmp_path, capsys):
    data = synthetic(tmp_path)
    p = data["paths"]
    out = tmp_path / "out"
    summary = detect.main(["--features", str(p["features"]), "--labels", str(p["labels"]), "--out", str(out),
                           "--clean_labels", str(p["clean"])])
    is_clean = data["clean"] == data["noisy"]
    rows = issues(out)
    assert [int(r["index"]) for r in sorted(rows, key=lambda r: r["index"])] == list(range(400))
    # ranked by clean probability, then by score
    keys = [(r["clean_prob"], r["score"]) for r in rows]
    assert keys == sorted(keys)
    flagged = np.array([int(r["index"]) for r in rows if r["flagged"]])
    selected = np.setdiff1d(np.arange(400), flagged)
    precision, recall = is_clean[selected].mean(), is_clean[selected].sum() / is_clean.sum()
    assert precision >= 0.95 and recall >= 0.95
    assert set(flagged) <= set(int(r["index"]) for r in rows[:len(flagged) + 5])  # the flagged come first
    suggested = {int(r["index"]): int(r["suggested_label"]) for r in rows}
    true_of_flipped = [suggested[i] == data["clean"][i] for i in np.flatnonzero(~is_clean)]
    assert np.mean(true_of_flipped) >= 0.95  # the suggested label is the true one
    written = json.loads((out / "summary.json").read_text())
    assert written == summary
    assert written["num_samples"] == 400 and written["selected"] == len(selected) and written["num_classes"] == 4
    assert written["noise_rate"] == pytest.approx(len(flagged) / 400)
    assert written["detection"]["precision"] == pytest.approx(precision)
    assert written["detection"]["recall"] == pytest.approx(recall)
    assert written["detection"]["auroc"] > 0.95 and written["true_noise_rate"] == pytest.approx(0.2)
    assert written["options"] == {"fit": "gmm", "p_threshold": 0.5, "score": "lda", "vector": "eigen",
                                  "gmm_max_iter": 100, "lda_refine": 1, "lda_decision": "sign"}
    assert "precision" in capsys.readouterr().out


def test_transition_estimate_recovers_a_planted_asymmetric_flip(tmp_path):
    """30% of class 0 relabelled 1: among the samples labelled 1, the true class is 0 for 90 / (300 + 90)."""
    rng = np.random.default_rng(1)
    k, d, per_class = 3, 16, 300
    directions = np.linalg.qr(rng.standard_normal((d, k)))[0].T
    clean = np.repeat(np.arange(k), per_class)
    feats = directions[clean] * rng.uniform(1, 3, (len(clean), 1)) + 0.05 * rng.standard_normal((len(clean), d))
    noisy = clean.copy()
    noisy[rng.choice(per_class, 90, replace=False)] = 1
    for name, arr in (("f", feats.astype(np.float32)), ("y", noisy), ("c", clean)):
        np.save(tmp_path / f"{name}.npy", arr)
    summary = detect.main(["--features", str(tmp_path / "f.npy"), "--labels", str(tmp_path / "y.npy"),
                           "--clean_labels", str(tmp_path / "c.npy"), "--out", str(tmp_path / "out")])
    transition = np.array(summary["transition"])
    assert transition[1, 0] == pytest.approx(90 / 390, abs=0.02) and transition[1, 1] == pytest.approx(300 / 390,
                                                                                                         abs=0.02)
    assert transition[0, 0] == pytest.approx(1.0, abs=0.02) and transition[2, 2] == pytest.approx(1.0, abs=0.02)
    assert summary["class_noise_rate"][1] == pytest.approx(90 / 390, abs=0.02) and summary["flagged_counts"][1][0] > 80


@pytest.mark.parametrize("options", [["--fit", "kmeans"], ["--fit", "bmm", "--score", "squared"],
                                     ["--vector", "mean", "--num_classes", "6"]])
def test_detect_options_without_clean_labels(tmp_path, capsys, options):
    data = synthetic(tmp_path)
    p = data["paths"]
    summary = detect.main(["--features", str(p["features"]), "--labels", str(p["labels"]), "--out",
                           str(tmp_path / "out"), *options])
    assert summary["detection"] == "clean labels: not given"
    assert "true noise rate" not in capsys.readouterr().out
    selected = [int(r["index"]) for r in issues(tmp_path / "out") if not r["flagged"]]
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
    ("features", "labels", ["--fit", "bmm"], "--fit bmm needs scores in [0, 1] but --score lda"),
])
def test_bad_inputs_are_one_line_errors(tmp_path, features, labels, extra, message):
    files = _bad_inputs(tmp_path)
    files["missing"] = str(tmp_path / "nope.npy")
    extra = [files.get(x, x) for x in extra]
    with pytest.raises(detect.UserError, match=re.escape(message)) as err:
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


def _planted_table(path: Path, seed: int = 1) -> np.ndarray:
    """scikit-learn's digits as a 64-feature table (1,400 train / 397 test), 25% of the training labels moved to
    another class uniformly; returns the clean training labels."""
    x, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(y))
    train, test = perm[:1400], perm[1400:]
    noisy = y[train].copy()
    flip = rng.choice(1400, 350, replace=False)
    noisy[flip] = (noisy[flip] + rng.integers(1, 10, 350)) % 10
    np.savez(path, x_train=x[train].astype(np.float32), y_train=noisy, y_train_clean=y[train],
             x_test=x[test].astype(np.float32), y_test=y[test])
    return y[train]


def test_detect_on_a_run_finds_planted_flips_in_a_table(tmp_path):
    """The path from a table to its suspected errors: train on it, then detect with the run's own network. With 25%
    planted flips and 10 epochs of standard training, seeds 0-3 found 93-96% of the flips at 71-89% precision
    (AUROC 0.97-0.98); the bounds leave a margin."""
    clean = _planted_table(tmp_path / "digits_table.npz")
    with contextlib.redirect_stdout(io.StringIO()):
        run = ds.main(ds.get_args_parser().parse_args([
            "--dataset", "npz", "--data_path", str(tmp_path / "digits_table.npz"), "--noise_kind", "none",
            "--method", "standard", "--epochs", "10", "--device", "cpu", "--output", str(tmp_path / "runs")]))
        summary = detect.main(["--run", run["run_dir"]])
    out = Path(run["run_dir"]) / "detect"
    m = summary["detection"]
    assert m["error_recall"] >= 0.85 and m["error_precision"] >= 0.6 and m["auroc"] >= 0.95
    assert summary["true_noise_rate"] == pytest.approx(0.25) and 0.15 <= summary["noise_rate"] <= 0.45
    assert summary["checkpoint"] == "last.pt" and summary["epoch"] == 9 and summary["options"]["fit"] == "gmm"
    rows = issues(out)
    top = [int(r["index"]) for r in rows[:100]]
    given = np.load(tmp_path / "digits_table.npz")["y_train"]
    assert np.mean(given[top] != clean[top]) >= 0.9  # the most suspect are almost all planted flips


def test_detect_on_a_run_of_signals(tmp_path):
    x_train, y_train = signals(240, seed=0)
    x_test, y_test = signals(60, seed=1)
    rng = np.random.default_rng(0)
    noisy = y_train.copy()
    flip = rng.choice(240, 48, replace=False)
    noisy[flip] = (noisy[flip] + 1) % 3
    np.savez(tmp_path / "signals.npz", x_train=x_train, y_train=noisy, y_train_clean=y_train, x_test=x_test,
             y_test=y_test)
    with contextlib.redirect_stdout(io.StringIO()):
        run = ds.main(ds.get_args_parser().parse_args([
            "--dataset", "npz", "--data_path", str(tmp_path / "signals.npz"), "--noise_kind", "none",
            "--method", "standard", "--epochs", "8", "--device", "cpu", "--output", str(tmp_path / "runs")]))
        summary = detect.main(["--run", run["run_dir"], "--checkpoint", "best", "--out", str(tmp_path / "det")])
    assert run["arch"] == "cnn1d" and summary["checkpoint"] == "best.pt"
    assert len(issues(tmp_path / "det")) == 240 and summary["detection"]["auroc"] > 0.5


def test_run_form_refusals(tmp_path):
    with pytest.raises(detect.UserError, match="holds no args.json and last.pt"):
        detect.main(["--run", str(tmp_path)])
    with pytest.raises(detect.UserError, match="--run takes the features and labels from the run"):
        detect.main(["--run", str(tmp_path), "--labels", "y.npy"])
    with pytest.raises(detect.UserError, match="pass --features and --labels"):
        detect.main(["--out", str(tmp_path)])
