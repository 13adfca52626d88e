"""engine.report on fabricated run directories: means and stds over seeds, layout, published numbers, rounds."""
from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dividemix.train import DivideMix
from dynamic_selection.train import DynamicSelection
from engine.report import get_args_parser, load_published, main
from fine.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
SEL = {"precision": 0.9, "recall": 0.8, "f1": 0.85, "specificity": 0.7, "accuracy": 0.8, "selected": 100}

# (trainer, dataset, noise_kind, noise_rate, noise_label, method, loss, selector) -> {seed: (best, last, selection)}
BEST, MAX = "Test accuracy at the best validation epoch (%)", "Maximum test accuracy over epochs (%)"
LAST, LAST10 = "Last-epoch test accuracy (%)", "Mean test accuracy of the last 10 epochs (%)"
RUNS = {
    ("dynamic_selection", "cifar10", "sym", 0.8, None, "fine", "ce", "fine"): {
        1: (70.1, 69.0, dict(SEL, precision=0.90)), 2: (68.3, 67.9, dict(SEL, precision=0.94)),
        3: (69.9, 69.5, dict(SEL, precision=0.95))},
    ("dynamic_selection", "cifar10", "sym", 0.8, None, "standard", "ce", None): {
        1: (40.0, 22.0, None), 2: (42.0, 25.0, None)},
    ("dynamic_selection", "cifar10", "sym", 0.8, None, "f-coteaching", "ce", "fine"): {1: (74.0, 73.0, SEL)},
    ("dynamic_selection", "cifar10", "sym", 0.8, None, "fine", "ce", "small-loss"): {1: (65.0, 64.0, SEL)},
    ("dynamic_selection", "cifar10", "asym", 0.4, None, "fine", "ce", "fine"): {
        1: (89.0, 88.0, dict(SEL, recall=0.7)), 2: (90.0, 89.5, dict(SEL, recall=0.9)), 3: (89.4, 89.0, None)},
    ("dividemix", "cifar10", "sym", 0.5, None, "dividemix", "mixmatch", "loss-gmm"): {
        1: (94.5, 94.1, SEL), 2: (94.9, 94.7, SEL)},
    ("dynamic_selection", "cifar10", "human", 0.5, "worst", "standard", "ce", None): {1: (78.0, 77.0, None)},
    ("dynamic_selection", "cifar100", "sym", 0.8, None, "fine", "gce", "fine"): {
        1: (36.5, 36.0, SEL), 2: (37.5, 37.1, SEL)},
}


def write_summary(path: Path, key: tuple, seed: int, best: float, last: float, selection: dict | None,
                  finished: bool = True) -> None:
    trainer, dataset, kind, rate, label, method, loss, selector = key
    described = {"dynamic_selection": DynamicSelection, "dividemix": DivideMix}[trainer].describe(
        argparse.Namespace(method=method, loss=loss, selector=selector))  # the label the trainer writes
    path.mkdir(parents=True)
    (path / "args.json").write_text("{}")
    (path / "summary.json").write_text(json.dumps({
        "trainer": trainer, "dataset": dataset, "noise_kind": kind, "noise_rate": rate, "noise_label": label,
        "method": method, "loss": loss, "selector": selector, "label": described["label"], "seed": seed,
        "arch": "resnet34",
        "run_dir": str(path), "epochs": 120, "best_epoch": 90, "best_val_acc": None, "best_test_acc": best,
        "max_test_acc": best + 1.0, "last_test_acc": last, "last10_mean_test_acc": last - 0.5,
        "selection": selection, "wall_time_s": 1.0, "finished": finished}))


@pytest.fixture
def runs(tmp_path) -> Path:
    root = tmp_path / "runs"
    for key, seeds in RUNS.items():
        for seed, (best, last, selection) in seeds.items():
            name = "_".join(map(str, key)) + f"_seed{seed}"
            write_summary(root / key[0] / name, key, seed, best, last, selection)
    (root / "dynamic_selection" / "killed_run").mkdir()
    (root / "dynamic_selection" / "killed_run" / "args.json").write_text("{}")
    write_summary(root / "dynamic_selection" / "unfinished", next(iter(RUNS)), 4, 10.0, 10.0, None, finished=False)
    return root


def run_report(*argv: str) -> str:
    return main(get_args_parser().parse_args(list(argv)))


def tables(markdown: str) -> dict[str, dict[str, dict[str, str]]]:
    """``{section title: {row label: {column: cell}}}`` for every Markdown table, checking that each one parses."""
    out, title, lines = {}, None, markdown.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("#"):
            title = lines[i].lstrip("#").strip()
        if lines[i].startswith("|"):
            block = []
            while i < len(lines) and lines[i].startswith("|"):
                block.append(lines[i])
                i += 1
            cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in block]
            assert all(line.endswith("|") for line in block)
            assert all(len(row) == len(cells[0]) for row in cells)
            assert all(set(c) == {"-"} for c in cells[1])
            out[title] = {row[0]: dict(zip(cells[0][1:], row[1:])) for row in cells[2:]}
        i += 1
    return out


def test_csv_means_and_stds_match_numpy(runs):
    run_report(str(runs))
    rows = list(csv.DictReader((runs / "report.csv").open()))
    by_key = {(r["trainer"], r["method"], r["loss"], r["selector"], r["dataset"], r["setting"], r["metric"]): r
              for r in rows}
    assert len(by_key) == len(rows) == len(RUNS) * 7
    settings = {"sym": "sym {:g}", "asym": "asym {:g}"}
    for key, seeds in RUNS.items():
        trainer, dataset, kind, rate, label, method, loss, selector = key
        setting = f"{kind} {label}" if label else settings[kind].format(rate)
        values = {
            "best_test_acc": [b for b, _, _ in seeds.values()],
            "max_test_acc": [b + 1.0 for b, _, _ in seeds.values()],
            "last_test_acc": [la for _, la, _ in seeds.values()],
            "last10_mean_test_acc": [la - 0.5 for _, la, _ in seeds.values()],
            "selection_precision": [s["precision"] for _, _, s in seeds.values() if s],
            "selection_recall": [s["recall"] for _, _, s in seeds.values() if s],
        }
        for metric, vals in values.items():
            row = by_key[(trainer, method, loss, selector or "", dataset, setting, metric)]
            assert int(row["n"]) == len(vals)
            if vals:
                assert float(row["mean"]) == pytest.approx(np.mean(vals))
            else:
                assert row["mean"] == ""
            if len(vals) > 1:
                assert float(row["std"]) == pytest.approx(np.std(vals, ddof=1))
            else:
                assert row["std"] == ""


def test_markdown_layout_cells_and_skipped_runs(runs, tmp_path):
    text = run_report(str(runs), "--out", str(tmp_path / "out"))
    assert "skipped 2 unfinished run(s):" in text and "killed_run" in text and "unfinished" in text
    md = (tmp_path / "out" / "report.md").read_text()
    assert md in text and (tmp_path / "out" / "report.csv").exists() and not (runs / "report.md").exists()
    t = tables(md)
    assert set(t) == {f"{what}: {d}" for d in ("cifar10", "cifar100") for what in (
        BEST, MAX, LAST, "Selection quality (precision / recall / F1 of the final selection)")}
    best = t[f"{BEST}: cifar10"]
    assert list(best) == ["Standard (CE)", "FINE", "FINE (small-loss selector)", "F-Coteaching", "DivideMix"]
    assert list(best["FINE"]) == ["sym 0.5", "sym 0.8", "asym 0.4", "human worst"]
    fine = [70.1, 68.3, 69.9]
    assert best["FINE"]["sym 0.8"] == f"{np.mean(fine):.2f} ± {np.std(fine, ddof=1):.2f}"
    assert best["F-Coteaching"]["sym 0.8"] == "74.00 (n=1)"
    assert best["Standard (CE)"]["sym 0.8"] == "41.00 ± 1.41 (n=2)"
    assert best["Standard (CE)"]["human worst"] == "78.00 (n=1)"
    assert best["DivideMix"]["sym 0.8"] == "-"
    assert t[f"{LAST}: cifar10"]["FINE"]["asym 0.4"] == f"{np.mean([88.0, 89.5, 89.0]):.2f} ± 0.76"
    assert t[f"{MAX}: cifar10"]["F-Coteaching"]["sym 0.8"] == "75.00 (n=1)"
    sel = t["Selection quality (precision / recall / F1 of the final selection): cifar10"]
    assert sel["Standard (CE)"]["sym 0.8"] == "n/a"
    assert sel["FINE"]["sym 0.8"] == f"{np.mean([0.90, 0.94, 0.95]):.3f} / 0.800 / 0.850"
    assert sel["FINE"]["asym 0.4"] == "0.900 / 0.800 / 0.850 (n=2)"
    assert list(t[f"{BEST}: cifar100"]) == ["FINE + GCE"]


def test_reference_puts_published_numbers_beside_ours_of_the_same_protocol(runs):
    md = run_report(str(runs), "--reference", "--metric", "best")
    t = tables(md)
    assert set(t) == {f"{BEST}: cifar10", f"{BEST}: cifar100", *(f"Selection quality (precision / recall / F1 of the "
                                                                  f"final selection): {d}" for d in ("cifar10",
                                                                                                    "cifar100"))}
    best = t[f"{BEST}: cifar10"]
    # FINE's sample-selection numbers come from the checkpoint picked on validation accuracy
    assert list(best["FINE"]) == ["sym 0.5", "sym 0.8", "sym 0.8 (paper)", "asym 0.4", "asym 0.4 (paper)",
                                  "human worst"]
    assert best["FINE"]["sym 0.8 (paper)"] == "69.4*" and best["FINE"]["asym 0.4 (paper)"] == "89.5*"
    assert "Co-teaching" not in best and best["DivideMix"]["sym 0.8 (paper)"] == "-"  # other protocols
    assert "- FINE, cifar10 sym 0.8, best: 69.4* (FINE paper sample-selection table" in md
    maximum = tables(run_report(str(runs), "--reference", "--metric", "max"))[f"{MAX}: cifar10"]
    assert maximum["DivideMix"]["sym 0.5 (paper)"] == "94.6"  # primary source: no mark
    assert maximum["Co-teaching"]["sym 0.8 (paper)"] == "66.3*" and maximum["F-Coteaching"]["sym 0.8"] == "75.00 (n=1)"
    assert maximum["Standard (CE)"]["human worst (paper)"] == "77.69" and maximum["ProMix"]["human worst (paper)"]
    assert maximum["FINE"]["sym 0.8 (paper)"] == "-"
    last10 = tables(run_report(str(runs), "--reference", "--metric", "last10"))[f"{LAST10}: cifar10"]
    assert last10["DivideMix"]["sym 0.5 (paper)"] == "94.4" and last10["DivideMix"]["sym 0.5"] == "93.90 ± 0.42 (n=2)"


def test_published_file_holds_the_protocol_numbers():
    rows = load_published()
    assert len(rows) == 40
    assert {r.method for r in rows} == {"Co-teaching", "FINE", "F-Coteaching", "DivideMix", "F-DivideMix",
                                        "Standard (GCE)", "FINE + GCE", "Standard (CE)", "ProMix"}
    assert {r.metric for r in rows} == {"best", "max", "last10", "top5"}
    unverified = {r.method for r in rows if not r.verified}
    assert {"F-DivideMix", "FINE + GCE", "Co-teaching"} <= unverified
    dividemix_c10 = {(r.setting.name, r.metric): r for r in rows if r.method == "DivideMix"
                     and r.setting.dataset == "cifar10"}
    assert dividemix_c10[("sym 0.9", "last10")].value == "75.4" and dividemix_c10[("sym 0.9", "last10")].verified
    assert dividemix_c10[("sym 0.9", "max")].value == "76.0"


def test_duplicate_seeds_are_flagged(runs):
    key = next(iter(RUNS))
    write_summary(runs / "dynamic_selection" / "other_flags", key, 1, 50.0, 50.0, None)
    assert "warning: FINE on cifar10 sym 0.8 has seed(s) 1 more than once" in run_report(str(runs))


def test_empty_or_unfinished_dir_is_a_one_line_error(tmp_path):
    (tmp_path / "a" / "run").mkdir(parents=True)
    (tmp_path / "a" / "run" / "args.json").write_text("{}")
    with pytest.raises(UserError, match=r"no finished run .* \(1 unfinished\)"):
        run_report(str(tmp_path / "a"))
    (tmp_path / "empty").mkdir()
    result = subprocess.run([sys.executable, "-m", "engine.report", str(tmp_path / "empty")], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("error: no finished run") and len(result.stderr.strip().splitlines()) == 1


def save_round(folder: Path, name: str, mask: list[int], noisy: np.ndarray, clean: np.ndarray | None) -> None:
    m = np.array(mask, dtype=bool)
    arrays = {"indices": np.flatnonzero(m), "mask": m, "scores": np.linspace(0, 1, m.size, dtype=np.float32),
              "clean_prob": m.astype(np.float32), "noisy_labels": noisy}
    if clean is not None:
        arrays["clean_labels"] = clean
    np.savez(folder / f"{name}.npz", **arrays)


def test_selection_rounds_by_hand(tmp_path):
    folder = tmp_path / "run" / "selection"
    folder.mkdir(parents=True)
    noisy = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 2])
    clean = np.array([0, 0, 1, 1, 1, 0, 2, 2, 2, 1])  # samples 2, 5, 9 are mislabelled: 7 clean
    save_round(folder, "round_040", [1, 1, 1, 1, 1, 1, 1, 1, 0, 0], noisy, clean)
    save_round(folder, "round_050", [1, 1, 0, 1, 1, 0, 1, 1, 1, 1], noisy, clean)
    save_round(folder, "round_060", [1, 1, 0, 1, 1, 0, 1, 1, 1, 0], noisy, clean)
    args = {"selector": "loss-gmm", "p_threshold": 0.6, "loss_history": 5, "fit": None}
    (tmp_path / "run" / "args.json").write_text(json.dumps({"trainer": "dividemix", "args": args}))
    text = run_report("--selection", str(tmp_path / "run"))
    assert "Selector: loss-gmm (`--selector loss-gmm`, --p_threshold 0.6, --loss_history 5)." in text
    rounds = tables(text)["selection: 3 round(s), 10 training samples"]
    # round 40: 8 selected, 6 clean -> precision 6/8, recall 6/7; round 50: 8 selected, 7 clean
    assert rounds["40"] == {"selected": "8", "precision": "0.750", "recall": "0.857", "F1": f"{2 * 6 / 15:.3f}",
                            "recall (classes without wrong labels)": "n/a", "entered": "-", "left": "-"}
    assert rounds["50"] == {"selected": "8", "precision": "0.875", "recall": "1.000", "F1": f"{2 * 7 / 15:.3f}",
                            "recall (classes without wrong labels)": "n/a", "entered": "2", "left": "2"}
    assert rounds["60"] == {"selected": "7", "precision": "1.000", "recall": "1.000", "F1": "1.000",
                            "recall (classes without wrong labels)": "n/a", "entered": "0", "left": "1"}
    per_class = tables(text)["selection: per class, round 60"]
    assert per_class["2"] == {"labelled": "4", "wrongly labelled": "1", "selected": "3", "precision": "1.000",
                              "recall": "1.000", "F1": "1.000"}
    assert per_class["0"]["selected"] == "2" and per_class["0"]["recall"] == "1.000"
    all_rounds = tables(run_report("--selection", str(tmp_path / "run"), "--per_class"))
    assert all_rounds["selection: per class, round 50"]["2"]["precision"] == "0.750"  # sample 9 is mislabelled
    assert all_rounds["selection: per class, round 40"]["2"]["recall"] == f"{2 / 3:.3f}"


def test_selection_two_nets_without_clean_labels(tmp_path):
    folder = tmp_path / "run" / "selection"
    folder.mkdir(parents=True)
    noisy = np.array([0, 1, 0, 1])
    for net, masks in (("net1", ([1, 1, 0, 0], [0, 1, 1, 0])), ("net2", ([1, 1, 1, 1], [1, 0, 0, 1]))):
        for rnd, mask in zip((40, 50), masks):
            save_round(folder, f"round_{rnd:03d}_{net}", mask, noisy, None)
    text = run_report("--selection", str(tmp_path / "run"))
    assert "## net1: 2 round(s), 4 training samples" in text and "## net2" in text
    assert text.count("n/a: no clean labels") == 2
    t = tables(text)
    assert t["net2: per class, round 50"]["1"] == {"labelled": "2", "wrongly labelled": "n/a", "selected": "1",
                                                    "precision": "n/a",
                                                    "recall": "n/a", "F1": "n/a"}
    assert t["net1: 2 round(s), 4 training samples"]["50"] == {
        "selected": "2", "precision": "n/a", "recall": "n/a", "F1": "n/a",
        "recall (classes without wrong labels)": "n/a", "entered": "1", "left": "1"}
    with pytest.raises(UserError, match="no selection/round_"):
        run_report("--selection", str(tmp_path))
