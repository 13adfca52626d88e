"""Smoke, schedule, resume and bad-input tests of ``python -m dynamic_selection.train`` on tiny CPU settings."""
from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from data_loader import build_datasets
from dynamic_selection import train as ds
from engine import loop
from fine.errors import UserError
from tests.fixtures import write_cifar10


def run(tmp_path: Path, *flags: str) -> dict:
    """Run the trainer in-process on digits (unless flags say otherwise) and return its summary."""
    argv = ["--dataset", "digits", "--data_path", str(tmp_path / "data"), "--output", str(tmp_path / "runs"),
            "--device", "cpu", "--epochs", "2", "--batch_size", "128", *flags]
    return ds.main(ds.get_args_parser().parse_args(argv))


def rows(summary: dict) -> list[dict]:
    """The run's metrics.jsonl rows without wall-clock timings (the only fields a rerun may change)."""
    lines = (Path(summary["run_dir"]) / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if not k.endswith("seconds")} for line in lines]


@pytest.mark.parametrize("method,loss", [
    ("standard", "ce"), ("standard", "gce"), ("fine", "ce"), ("fine", "sce"), ("fine", "elr"),
    ("f-coteaching", "ce"), ("coteaching", "ce"), ("coteaching", "elr"), ("coteaching+", "ce"),
])
def test_every_method_runs_two_epochs(tmp_path, method, loss):
    flags = ["--method", method, "--loss", loss]
    if method in ("fine", "f-coteaching"):
        flags += ["--warmup", "1", "--every", "1"]
    if method == "coteaching+":
        flags += ["--init_epochs", "1"]
    summary = run(tmp_path, *flags)
    run_dir = Path(summary["run_dir"])
    assert summary["finished"] and summary["method"] == method and summary["loss"] == loss
    assert 0.0 <= summary["last_test_acc"] <= 100.0
    assert [r["epoch"] for r in rows(summary)] == [0, 1]
    assert (run_dir / "last.pt").exists() and (run_dir / "best.pt").exists() and (run_dir / "args.json").exists()
    assert list(run_dir.glob("events.out.tfevents.*"))
    if method in ("fine", "f-coteaching"):
        assert 0.0 < summary["selection"]["precision"] <= 1.0
        suffixes = ["_net1", "_net2"] if method == "f-coteaching" else [""]
        assert sorted(p.name for p in (run_dir / "selection").iterdir()) == [f"round_001{s}.npz" for s in suffixes]


def test_cifar_fixture_runs(tmp_path):
    write_cifar10(tmp_path / "data", n_train=200, n_test=40)
    summary = run(tmp_path, "--dataset", "cifar10", "--arch", "small_cnn", "--val_size", "20", "--method", "fine",
                  "--warmup", "1", "--every", "1", "--batch_size", "32")
    assert summary["finished"] and summary["best_val_acc"] is not None


def test_selection_runs_at_scheduled_epochs_on_unaugmented_features(tmp_path, monkeypatch):
    seen = []
    real = loop.extract_features

    def spy(model, loader, indices, device, **kw):
        seen.append(loader.dataset.transform)
        return real(model, loader, indices, device, **kw)

    monkeypatch.setattr(loop, "extract_features", spy)
    summary = run(tmp_path, "--method", "fine", "--epochs", "7", "--warmup", "2", "--every", "2")
    rounds = sorted(p.name for p in (Path(summary["run_dir"]) / "selection").iterdir())
    assert rounds == ["round_002.npz", "round_004.npz", "round_006.npz"]
    assert len(seen) == 3
    test_transform = build_datasets("digits", tmp_path / "data", noise_kind="sym", noise_rate=0.5, seed=1,
                                       val_size=0).test_transform
    assert all(repr(t) == repr(test_transform) for t in seen)  # un-augmented: the test transform, no random crop
    trained = [r["train/samples"] for r in rows(summary)]
    assert trained[0] == trained[1] and trained[2] < trained[0]  # selection shrinks the training set
    saved = np.load(Path(summary["run_dir"]) / "selection" / "round_004.npz")
    assert saved["mask"].sum() == len(saved["indices"]) == trained[4]


def test_num_batches_rounds_score_a_fresh_balanced_draw_and_train_on_its_selection(tmp_path):
    summary = run(tmp_path, "--method", "fine", "--epochs", "3", "--warmup", "1", "--every", "1",
                  "--num_batches", "5", "--batch_size", "32", "--noise_kind", "sym", "--noise_rate", "0.4")
    history = rows(summary)
    assert history[0]["train/samples"] == 160  # warm-up: a class-balanced draw of 5 x 32 from all samples
    rounds = [np.load(Path(summary["run_dir"]) / "selection" / f"round_00{e}.npz") for e in (1, 2)]
    for epoch, saved in zip((1, 2), rounds):
        samples, mask = saved["samples"], saved["mask"]
        assert len(np.unique(samples)) == len(samples) == len(mask) == 160
        assert np.bincount(saved["noisy_labels"], minlength=10).tolist() == [16] * 10  # balanced by noisy label
        np.testing.assert_array_equal(saved["indices"], samples[mask])
        # training until the next round uses exactly the draw's selected samples
        assert history[epoch]["train/samples"] == history[epoch]["select/selected"] == mask.sum() < 160
        precision = np.mean(saved["noisy_labels"][mask] == saved["clean_labels"][mask])
        assert history[epoch]["select/precision"] == pytest.approx(precision)
    assert set(rounds[0]["samples"]) != set(rounds[1]["samples"])  # a fresh draw every round


def test_f_coteaching_trains_each_net_on_the_peer_selection(tmp_path, monkeypatch):
    calls = []
    real = ds.train_one_epoch

    def spy(model, loader, *rest, **kw):
        calls.append((id(model), sorted(loader.sampler)))
        return real(model, loader, *rest, **kw)

    references = []
    real_select = ds.select_samples

    def spy_select(config, features, *rest, ref_mask=None, **kw):
        references.append(ref_mask)
        return real_select(config, features, *rest, ref_mask=ref_mask, **kw)

    monkeypatch.setattr(ds, "train_one_epoch", spy)
    monkeypatch.setattr(ds, "select_samples", spy_select)
    summary = run(tmp_path, "--method", "f-coteaching", "--warmup", "1", "--every", "1", "--epochs", "3")
    sel = {k: np.load(Path(summary["run_dir"]) / "selection" / f"round_001_{k}.npz") for k in ("net1", "net2")}
    net1_epoch1, net2_epoch1 = calls[2][1], calls[3][1]
    assert net1_epoch1 == sorted(sel["net2"]["indices"].tolist())
    assert net2_epoch1 == sorted(sel["net1"]["indices"].tolist())
    # Each network's class directions come from the samples it trained on, its peer's selection (FINE_official's
    # dynamic_coteach_trainer.py:114-126): whole classes in round 1, then net 1 from net 2's selection and back.
    assert references[:2] == [None, None] and len(references) == 4
    assert references[2].nonzero().squeeze(1).tolist() == net1_epoch1
    assert references[3].nonzero().squeeze(1).tolist() == net2_epoch1


def test_forget_rate_ramps_as_the_published_schedule():
    tau, num_gradual = 0.45, 40
    published = np.ones(120) * tau  # FINE_official loss/coteach.py:65-66, indexed by the 0-based epoch
    published[:num_gradual - 1] = np.linspace(0, tau, num_gradual - 1)
    ours = [ds.forget_rate_at(tau, epoch, num_gradual) for epoch in range(120)]
    np.testing.assert_allclose(ours, published, rtol=0, atol=1e-12)


def _coteaching_batches(n: int, batches: int):
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(n * batches, 5, generator=gen), torch.randint(0, 3, (n * batches,), generator=gen)
    return [(x[i * n:(i + 1) * n], y[i * n:(i + 1) * n], torch.arange(i * n, (i + 1) * n)) for i in range(batches)]


def test_coteaching_keeps_the_floor_of_the_remember_rate():
    torch.manual_seed(0)
    models = [torch.nn.Linear(5, 3), torch.nn.Linear(5, 3)]
    optimizers = [torch.optim.SGD(m.parameters(), lr=0.0) for m in models]
    losses = [ds.build_loss("ce", num_classes=3, num_samples=128) for _ in models]
    metrics = ds.train_one_epoch_coteaching(models, _coteaching_batches(128, 1), optimizers, losses, 0.45,
                                            disagree=False, epoch=0, is_clean=None, device=torch.device("cpu"),
                                            desc="test")
    assert metrics["kept_fraction"] == 70 / 128  # int(0.55 * 128) = int(70.4), as loss/coteach.py:40


@pytest.mark.parametrize("epoch, trained", [(0, [64, 64]), (4999, [64, 0])])
def test_coteaching_plus_batches_without_disagreement_train_only_early(epoch, trained):
    """Two identical networks never disagree: batch b of epoch e trains on all its samples while (e + 1) * b < 5000
    (FINE_official loss/coteach.py:98 with its 1-based epoch), and is skipped after that."""
    torch.manual_seed(0)
    net = torch.nn.Linear(5, 3)
    models = [net, copy.deepcopy(net)]
    optimizers = [torch.optim.SGD(m.parameters(), lr=0.0) for m in models]
    losses = [ds.build_loss("ce", num_classes=3, num_samples=128) for _ in models]
    metrics = ds.train_one_epoch_coteaching(models, _coteaching_batches(64, 2), optimizers, losses, 0.45,
                                            disagree=True, epoch=epoch, is_clean=None, device=torch.device("cpu"),
                                            desc="test")
    assert metrics["kept_fraction"] * 128 == sum(trained)


def test_published_recipes_resolve_as_the_published_code(tmp_path):
    def resolve(*flags: str) -> dict:
        with contextlib.redirect_stdout(io.StringIO()):
            return ds.main(ds.get_args_parser().parse_args([*flags, "--dry_run"]))

    asym = resolve("--dataset", "cifar10", "--method", "coteaching", "--noise_kind", "asym", "--noise_rate", "0.4")
    assert asym["forget_rate"] == 0.36  # 0.9 x the nominal rate (FINE_official loss/coteach.py:64), not 0.2
    fcot = resolve("--dataset", "cifar100", "--method", "f-coteaching")
    assert (fcot["milestones"], fcot["epochs"], fcot["warmup"]) == ([], 150, 42)  # constant lr, rounds at 42, 52, ..
    assert resolve("--dataset", "cifar100", "--method", "coteaching")["milestones"] == [80, 120]
    with pytest.raises(UserError, match="--forget_rate published is 0.9 x --noise_rate"):
        resolve("--dataset", "cifar10", "--noise_kind", "human", "--noise_label", "worst", "--method", "coteaching",
                "--forget_rate", "published")
    # without a nominal rate the default is the measured one (CIFAR-N's clean labels) or FINE's estimate (none known)
    human = resolve("--dataset", "cifar10", "--noise_kind", "human", "--noise_label", "worst", "--method", "coteaching")
    assert human["forget_rate"] == "realised"
    assert resolve("--dataset", "cifar10", "--noise_kind", "none", "--method", "coteaching")["forget_rate"] == "auto"


def test_fine_scores_by_margin_except_on_the_papers_datasets(tmp_path):
    def resolve(*flags: str) -> dict:
        with contextlib.redirect_stdout(io.StringIO()):
            return ds.main(ds.get_args_parser().parse_args([*flags, "--dry_run"]))

    for dataset in ("cifar10", "cifar100", "clothing1m", "webvision"):  # the published |<u, z>|
        assert resolve("--dataset", dataset, "--method", "fine")["score"] == "abs"
    assert resolve("--dataset", "digits", "--method", "fine", "--data_path", str(tmp_path))["score"] == "margin"
    assert resolve("--dataset", "digits", "--data_path", str(tmp_path), "--score", "squared")["score"] == "squared"
    with pytest.raises(UserError, match="--fit bmm needs scores in \\[0, 1\\] but --score margin .* add --score abs"):
        resolve("--dataset", "digits", "--data_path", str(tmp_path), "--fit", "bmm")
    bmm = resolve("--dataset", "digits", "--data_path", str(tmp_path), "--fit", "bmm", "--score", "abs")
    assert (bmm["fit"], bmm["score"]) == ("bmm", "abs")


def test_resume_continues_to_the_same_result(tmp_path, monkeypatch):
    flags = ["--method", "fine", "--loss", "elr", "--epochs", "4", "--warmup", "1", "--every", "2"]
    straight = run(tmp_path / "a", *flags)

    real = ds.train_one_epoch
    count = {"n": 0}

    def dies_in_third_epoch(*args, **kw):
        count["n"] += 1
        if count["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(ds, "train_one_epoch", dies_in_third_epoch)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b", *flags)
    monkeypatch.setattr(ds, "train_one_epoch", real)
    killed_dir = Path(straight["run_dir"].replace(str(tmp_path / "a"), str(tmp_path / "b")))
    assert [r["epoch"] for r in rows({"run_dir": killed_dir})] == [0, 1]
    resumed = run(tmp_path / "b", *flags, "--resume")
    assert rows(resumed) == rows(straight)
    for key in ("best_test_acc", "last_test_acc", "best_epoch", "selection"):
        assert resumed[key] == straight[key]
    assert run(tmp_path / "b", *flags, "--resume") == {}  # a finished run is skipped


def test_existing_run_directory_is_refused(tmp_path):
    run(tmp_path, "--method", "standard", "--epochs", "1")
    with pytest.raises(UserError, match="already exists.*--resume.*--overwrite"):
        run(tmp_path, "--method", "standard", "--epochs", "1")
    assert run(tmp_path, "--method", "standard", "--epochs", "1", "--overwrite")["finished"]


@pytest.mark.parametrize("flags,message", [
    (["--method", "coteaching", "--selector", "fine"], "--selector applies to --method fine"),
    (["--method", "standard", "--every", "5"], "--every applies to"),
    (["--method", "fine", "--every", "0"], "--every must be at least 1"),
    (["--method", "fine", "--warmup", "1", "--p_threshold", "1.5"], r"--p_threshold 1.5 is outside \(0, 1\)"),
    (["--noise_rate", "1.2"], r"--noise_rate 1.2 is outside \[0, 1\]"),
    (["--method", "standard", "--noise_kind", "asym", "--dataset", "cifar10"],
     "cifar10 not found: looked for .*download_cifar.sh"),
    (["--method", "fine", "--forget_rate", "0.3"], "--forget_rate applies to"),
    (["--method", "fine", "--warmup", "5"], "--warmup 5 leaves no epoch"),
    (["--method", "f-coteaching", "--selector", "small-loss"], "always selects with FINE"),
])
def test_bad_options_are_refused_before_any_work(tmp_path, flags, message):
    with pytest.raises(UserError, match=message):
        run(tmp_path, *flags)
    assert not (tmp_path / "runs").exists()


def test_command_line_prints_one_line_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "dynamic_selection.train", "--noise_rate", "2",
                           "--output", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: --noise_rate 2.0 is outside [0, 1]; pass a fraction such as 0.5"]


def test_diverging_run_stops_with_a_clear_message(tmp_path, monkeypatch):
    real = ds.train_one_epoch

    def nan_in_second_epoch(*args, **kw):
        out = real(*args, **kw)
        if nan_in_second_epoch.calls == 1:
            out["loss"] = float("nan")
        nan_in_second_epoch.calls += 1
        return out

    nan_in_second_epoch.calls = 0
    monkeypatch.setattr(ds, "train_one_epoch", nan_in_second_epoch)
    with pytest.raises(UserError, match="diverged at epoch 1"):
        run(tmp_path, "--method", "standard")
    ckpt = torch.load(next((tmp_path / "runs").rglob("last.pt")), weights_only=False)
    assert ckpt["state"]["epoch"] == 0  # the last good checkpoint is kept


@pytest.mark.slow
def test_demo_claim_fine_beats_standard_on_digits(tmp_path):
    """scripts/demo.sh's claim for one seed: at 50% symmetric noise FINE ends >= 10 points above standard."""
    common = ["--noise_kind", "sym", "--noise_rate", "0.5", "--seed", "1", "--batch_size", "64", "--device", "cpu",
              "--data_path", str(tmp_path / "data")]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    runs = {m: subprocess.Popen([sys.executable, "-m", "dynamic_selection.train", "--method", m, "--output",
                                 str(tmp_path / m), *common], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True) for m in ("standard", "fine")}  # side by side
    for proc in runs.values():
        assert proc.wait(timeout=600) == 0, proc.stderr.read()[-2000:]
    standard, fine = (json.loads(next((tmp_path / m).rglob("summary.json")).read_text()) for m in runs)
    assert fine["last_test_acc"] >= standard["last_test_acc"] + 10.0
    assert fine["selection"]["precision"] > 0.9


def test_bf16_autocast_runs_on_cpu(tmp_path):
    summary = run(tmp_path, "--method", "coteaching", "--amp", "bf16")
    assert summary["finished"] and 0.0 <= summary["last_test_acc"] <= 100.0


def test_fp16_needs_cuda(tmp_path):
    with pytest.raises(UserError, match="--amp fp16 needs a CUDA device"):
        run(tmp_path, "--method", "standard", "--amp", "fp16")


def test_forget_rate_auto_uses_fines_estimate_while_the_ramp_rises(tmp_path, monkeypatch):
    """Co-teaching without clean labels: epoch 0 drops nothing, then tau is 1 - the fraction FINE keeps in network
    1's features, re-estimated after each epoch of the ramp and kept from its end."""
    keep = []
    real = ds.DynamicSelection.fine_keep_ratio

    def spy(self, *args, **kw):
        keep.append(real(self, *args, **kw))
        return keep[-1]

    monkeypatch.setattr(ds.DynamicSelection, "fine_keep_ratio", spy)
    summary = run(tmp_path, "--method", "coteaching", "--forget_rate", "auto", "--num_gradual", "5",
                  "--epochs", "5", "--batch_size", "64")
    taus = [1.0 - k for k in keep]
    assert len(taus) == 3  # after epochs 0, 1 and 2: the ramp reaches tau at epoch num_gradual - 2 = 3
    expected = [0.0, taus[0] / 3, 2 * taus[1] / 3, taus[2], taus[2]]
    assert [r["train/forget_rate"] for r in rows(summary)] == pytest.approx(expected)
    assert 0.25 < taus[-1] < 0.65  # the realised noise rate is 0.45 (50% symmetric noise over 10 classes)
    ckpt = torch.load(Path(summary["run_dir"]) / "last.pt", weights_only=False)
    assert ckpt["trainer"]["tau"] == pytest.approx(taus[-1])  # a resumed run keeps the estimate


def test_a_round_reports_split_classes_and_the_recall_of_classes_without_wrong_labels(tmp_path):
    summary = run(tmp_path, "--method", "fine", "--noise_kind", "asym", "--noise_rate", "0.4", "--warmup", "1",
                  "--every", "1")
    bundle = build_datasets("digits", tmp_path / "data", noise_kind="asym", noise_rate=0.4, seed=1, val_size=140)
    noisy, clean = np.asarray(bundle.train.noisy_labels), np.asarray(bundle.train.clean_labels)
    whole = ~np.isin(noisy, noisy[noisy != clean])  # samples of the classes no wrong label went to: 0, 2, 5, 9
    assert set(noisy[whole]) == {0, 2, 5, 9}
    row = rows(summary)[1]
    selected = np.load(Path(summary["run_dir"]) / "selection" / "round_001.npz")["mask"]
    assert row["select/uncorrupted_recall"] == pytest.approx(selected[whole].mean())
    assert summary["selection"]["uncorrupted_recall"] == row["select/uncorrupted_recall"]
    assert 0 <= row["select/split_classes"] <= 10 and len(row["select/class_recall"]) == 10


def test_small_loss_selector_with_auto_keeps_fines_fraction(tmp_path):
    summary = run(tmp_path, "--method", "fine", "--selector", "small-loss", "--forget_rate", "auto",
                  "--warmup", "1", "--every", "1", "--epochs", "2")
    row = rows(summary)[1]
    assert 0 < row["select/selected"] < 1437  # each class keeps the fraction FINE finds clean in the same features


def test_a_run_started_from_a_warm_up_checkpoint_equals_the_straight_run(tmp_path):
    """--init_from: FINE forked from a standard run's epoch_001.pt (kept by --save_epochs) trains as FINE with a
    two-epoch warm-up does from scratch: same rows from epoch 2 on, same final weights."""
    common = ("--epochs", "4", "--seed", "3")
    warm = run(tmp_path / "warm", *common, "--method", "standard", "--save_epochs", "1")
    checkpoint = Path(warm["run_dir"]) / "epoch_001.pt"
    assert sorted(p.name for p in Path(warm["run_dir"]).glob("epoch_*.pt")) == ["epoch_001.pt"]
    fork = run(tmp_path / "fork", *common, "--method", "fine", "--selector", "loss-gmm", "--warmup", "2",
               "--every", "1", "--init_from", str(checkpoint))
    straight = run(tmp_path / "straight", *common, "--method", "fine", "--selector", "loss-gmm", "--warmup", "2",
                   "--every", "1")
    assert [r["epoch"] for r in rows(fork)] == [2, 3]
    assert rows(fork) == rows(straight)[2:]
    weights = [torch.load(Path(s["run_dir"]) / "last.pt", weights_only=False)["models"][0] for s in (fork, straight)]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    with pytest.raises(UserError, match="--init_from .* was trained with other flags \\(--lr 0.05 there, 0.1 here"):
        run(tmp_path / "bad", *common, "--method", "fine", "--warmup", "2", "--lr", "0.1", "--init_from",
            str(checkpoint))
    with pytest.raises(UserError, match="holds 1 network\\(s\\) but this method trains 2"):
        run(tmp_path / "bad", *common, "--method", "f-coteaching", "--warmup", "2", "--init_from", str(checkpoint))
