"""CPU smoke runs of the (F-)DivideMix trainer on digits: outputs, co-divide, exact resume, refusals."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

import dividemix.train as dm
from engine import loop
from fine.errors import UserError, run_cli

NUM_TRAIN = 1437  # the digits training split
POOL = 3 * 32  # --num_batches 3: each network splits a fresh draw of 3 batches of 32 samples per epoch


def _argv(tmp_path: Path, *extra: str, num_batches: bool = True) -> list[str]:
    return ["--dataset", "digits", "--noise_kind", "sym", "--noise_rate", "0.5", "--epochs", "2", "--warmup", "1",
            "--batch_size", "32", "--device", "cpu", "--output", str(tmp_path / "runs"),
            "--data_path", str(tmp_path / "data"), *(["--num_batches", "3"] if num_batches else []), *extra]


def _run(argv: list[str]) -> dict:
    return dm.main(dm.get_args_parser().parse_args(argv))


def _rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("selector", ["loss-gmm", "fine"])
def test_two_epoch_run_writes_sane_outputs(tmp_path, selector):
    summary = _run(_argv(tmp_path, "--selector", selector))
    run_dir = Path(summary["run_dir"])
    assert run_dir.parent.name == "digits_sym0.5" and run_dir.name.startswith(f"dividemix_{selector}_seed1_")
    assert json.loads((run_dir / "summary.json").read_text()) == summary
    assert summary["trainer"] == "dividemix" and summary["method"] == "dividemix" and summary["selector"] == selector
    assert summary["label"] == {"loss-gmm": "DivideMix", "fine": "F-DivideMix"}[selector]
    assert summary["best_val_acc"] is None and summary["finished"] and summary["epochs"] == 2
    assert 0 <= summary["last_test_acc"] <= summary["best_test_acc"] <= 100
    for key in ("precision", "recall", "f1", "specificity", "accuracy"):
        assert 0 <= summary["selection"][key] <= 1

    warm, mixmatch = _rows(run_dir)
    assert warm["epoch"] == 0 and "select/net1/selected" not in warm and np.isfinite(warm["train/loss"])
    assert mixmatch["epoch"] == 1 and mixmatch["val/acc"] is None
    assert mixmatch["test/acc"] == summary["last_test_acc"]
    for net in (1, 2):
        assert 0 < mixmatch[f"select/net{net}/selected"] <= POOL
        assert 0 <= mixmatch[f"select/net{net}/auc"] <= 1 and 0 <= mixmatch[f"select/net{net}/f1"] <= 1
        # each network splits only the epoch's class-balanced draw of samples
        assert mixmatch[f"train/net{net}/labelled"] + mixmatch[f"train/net{net}/unlabelled"] == POOL
        batches = min(3, -(-mixmatch[f"train/net{net}/labelled"] // 32))  # at most --num_batches
        assert mixmatch[f"train/net{net}/batches"] == batches and np.isfinite(mixmatch[f"train/net{net}/loss"])
        # The first iteration of the first MixMatch epoch has a ramp of 0; the last one (batches - 1) / batches in.
        assert mixmatch[f"train/net{net}/lambda_u"] == pytest.approx(25 * ((batches - 1) / batches) / 16)
    assert mixmatch["train/net1/labelled"] == mixmatch["select/net2/selected"]

    saved = np.load(run_dir / "selection" / "round_001_net1.npz")
    assert saved["mask"].shape == (POOL,) and saved["mask"].sum() == mixmatch["select/net1/selected"]
    np.testing.assert_array_equal(saved["mask"], saved["clean_prob"] > 0.5)
    samples = saved["samples"]  # the draw's dataset indices: distinct, class-balanced by noisy label
    assert len(np.unique(samples)) == POOL and samples.max() < NUM_TRAIN
    counts = np.bincount(saved["noisy_labels"], minlength=10)
    assert counts.sum() == POOL and counts.max() - counts.min() <= 1
    np.testing.assert_array_equal(saved["indices"], samples[saved["mask"]])
    assert (run_dir / "selection" / "round_001_net2.npz").exists()
    assert (run_dir / "last.pt").exists() and (run_dir / "best.pt").exists()
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1

    with pytest.raises(UserError, match="already exists"):
        _run(_argv(tmp_path, "--selector", selector))
    assert _run(_argv(tmp_path, "--selector", selector, "--resume")) == {}  # finished: skipped


def test_each_network_trains_on_its_peers_split(tmp_path, monkeypatch):
    made, trained = {}, []
    divide, mixmatch = dm.DivideMix.divide, dm.mixmatch_one_epoch

    def recording_divide(self, i, pool, *rest):
        sel = divide(self, i, pool, *rest)
        made[id(self.run.nets.models[i])] = sel, pool
        return sel

    def recording_mixmatch(model, peer, labelled, unlabelled, w, *rest, **kw):
        trained.append((id(model), id(peer), w.clone(), sorted(labelled.sampler.indices.tolist()),
                        sorted(unlabelled.sampler.indices.tolist())))
        return mixmatch(model, peer, labelled, unlabelled, w, *rest, **kw)

    monkeypatch.setattr(dm.DivideMix, "divide", recording_divide)
    monkeypatch.setattr(dm, "mixmatch_one_epoch", recording_mixmatch)
    _run(_argv(tmp_path, "--selector", "fine"))

    assert len(made) == 2 and len(trained) == 2
    first, second = trained
    assert first[1] == second[0] and first[0] == second[1] and first[0] != first[1]
    for model, peer, w, labelled, unlabelled in trained:
        sel, pool = made[peer]
        assert len(pool) == POOL
        torch.testing.assert_close(w[pool], sel.clean_prob)  # w by dataset index; 0 outside the epoch's draw
        outside = torch.ones(NUM_TRAIN, dtype=torch.bool)
        outside[pool] = False
        assert not w[outside].any()
        assert labelled == sorted(pool[sel.clean_mask].tolist())
        assert unlabelled == sorted(pool[~sel.clean_mask].tolist())
    masks = [sel.clean_mask for sel, _ in made.values()]
    assert not torch.equal(masks[0], masks[1])  # the two splits differ, so the check above is not vacuous


@pytest.mark.parametrize("penalty", [False, True])
def test_warmup_loss_is_cross_entropy_plus_confidence_penalty_for_asym_noise(penalty):
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 6, generator=gen), torch.randint(0, 3, (40,), generator=gen)
    model = torch.nn.Linear(6, 3)
    loader = DataLoader(TensorDataset(x, y, torch.arange(40)), batch_size=40)
    metrics = dm.warmup_one_epoch(model, loader, torch.optim.SGD(model.parameters(), lr=0.0),
                                  confidence_penalty=penalty, max_batches=None, device=torch.device("cpu"),
                                  desc="test")
    log_p = torch.log_softmax(model(x), 1)
    expected = F.nll_loss(log_p, y) + (penalty * (log_p.exp() * log_p).sum(1).mean())
    assert metrics["loss"] == pytest.approx(expected.item(), rel=1e-5)


class _Killed(Exception):
    pass


@pytest.mark.slow
def test_resumed_run_matches_uninterrupted_run(tmp_path, monkeypatch):
    # 3 epochs with a 2-epoch loss history: the resumed run must also restore the loss-GMM's history.
    extra = ["--epochs", "3", "--loss_history", "2"]
    straight = _run(_argv(tmp_path / "a", *extra, num_batches=False))

    save = loop.save_checkpoint

    def save_then_die(ckpt, path):
        save(ckpt, path)
        if ckpt["state"]["epoch"] == 1 and path.name == "last.pt":
            raise _Killed

    monkeypatch.setattr(loop, "save_checkpoint", save_then_die)
    with pytest.raises(_Killed):
        _run(_argv(tmp_path / "b", *extra, num_batches=False))
    monkeypatch.setattr(loop, "save_checkpoint", save)
    run_dir = tmp_path / "b" / Path(straight["run_dir"]).relative_to(tmp_path / "a")
    assert not (run_dir / "summary.json").exists() and len(_rows(run_dir)) == 2
    with pytest.raises(UserError, match="already exists"):
        _run(_argv(tmp_path / "b", *extra, num_batches=False))
    resumed = _run(_argv(tmp_path / "b", *extra, "--resume", num_batches=False))

    def timeless(rows: list[dict]) -> list[dict]:
        return [{k: v for k, v in r.items() if not k.endswith("seconds")} for r in rows]

    assert timeless(_rows(run_dir)) == timeless(_rows(Path(straight["run_dir"])))
    for key in ("best_test_acc", "last_test_acc", "best_epoch", "selection"):
        assert resumed[key] == straight[key]


@pytest.mark.parametrize("flags, message", [
    (["--p_threshold", "1.0"], "p_threshold"),
    (["--p_threshold", "0"], "p_threshold"),
    (["--warmup", "2"], "warmup"),
    (["--warmup", "-1"], "warmup"),
    (["--lambda_u", "-1"], "lambda_u"),
    (["--T", "0"], "--temperature"),
    (["--alpha", "-4"], "--alpha"),
    (["--num_batches", "0"], "num_batches"),
    (["--loss_history", "0"], "loss_history"),
    (["--selector", "fine", "--loss_history", "3"], "loss_history"),
    (["--loss_history", "2"], "different draw of samples"),  # with --num_batches 3
    (["--resume", "--overwrite"], "contradict"),
    (["--val_size", "140"], "val_size"),
])
def test_bad_options_are_refused(tmp_path, flags, message):
    with pytest.raises(UserError, match=message):
        _run(_argv(tmp_path, *flags))
    assert not (tmp_path / "runs").exists()


def test_setting_without_published_lambda_u_asks_for_it(tmp_path, capsys):
    argv = ["--dataset", "cifar10", "--noise_kind", "instance", "--noise_rate", "0.4", "--output", str(tmp_path)]
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: _run(argv))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "--lambda_u" in err and err.count("\n") == 1
    assert _run(argv + ["--lambda_u", "10", "--dry_run"])["lambda_u"] == 10


@pytest.mark.parametrize("dataset, kind, rate, expected", [
    ("cifar10", "sym", 0.2, dict(lambda_u=0.0, p_threshold=0.5, warmup=10, loss_history=1)),
    ("cifar10", "sym", 0.9, dict(lambda_u=50.0, p_threshold=0.6, warmup=10, loss_history=5)),
    ("cifar10", "asym", 0.4, dict(lambda_u=0.0, p_threshold=0.5, warmup=10)),
    ("cifar100", "sym", 0.5, dict(lambda_u=150.0, p_threshold=0.5, warmup=30)),
    ("cifar100", "sym", 0.2, dict(lambda_u=25.0, arch="preact_resnet18", epochs=301, batch_size=64, lr=0.02,
                                  weight_decay=5e-4, milestones=[150], gamma=0.1, val_size=0)),
])
def test_recipe_fills_the_papers_hyperparameters(dataset, kind, rate, expected):
    argv = ["--dataset", dataset, "--noise_kind", kind, "--noise_rate", str(rate), "--dry_run"]
    config = _run(argv)
    assert {k: config[k] for k in expected} == expected
    override = _run(argv + ["--p_threshold", "0.7", "--lambda_u", "3"])
    assert (override["p_threshold"], override["lambda_u"]) == (0.7, 3.0)


def test_bf16_autocast_runs_on_cpu_and_checkpoints_the_scalers(tmp_path):
    from engine.checkpoint import load_checkpoint

    summary = _run(_argv(tmp_path, "--amp", "bf16"))
    assert summary["finished"] and 0.0 <= summary["last_test_acc"] <= 100.0
    rows = _rows(Path(summary["run_dir"]))
    assert all(np.isfinite(r["train/loss"]) for r in rows)
    assert all(np.isfinite(rows[1][f"train/net{n}/{k}"]) for n in (1, 2) for k in ("loss_x", "loss_u", "penalty"))
    ckpt = load_checkpoint(Path(summary["run_dir"]) / "last.pt")
    assert len(ckpt["scalers"]) == 2


def test_fp16_needs_cuda(tmp_path):
    with pytest.raises(UserError, match="--amp fp16 needs a CUDA device"):
        _run(_argv(tmp_path, "--amp", "fp16"))


@pytest.mark.parametrize("flags, message", [
    (["--dataset", "clothing1m", "--noise_kind", "real", "--data_on_gpu", "on"],
     "--data_on_gpu on holds augmented images on the device"),
])
def test_speed_flags_refused_where_they_cannot_apply(tmp_path, flags, message):
    with pytest.raises(UserError, match=message):
        _run(_argv(tmp_path, *flags))




def test_ensemble_is_the_sum_of_the_networks_logits(tmp_path, monkeypatch):
    """DivideMix tests the sum of both networks' logits (Train_cifar.py:155): a prediction that one network makes
    with large logits wins even where averaged probabilities would choose otherwise."""
    logits = torch.tensor([[[10.0, 0.0, 0.0], [0.0, 1.0, 0.0]],    # network 1
                           [[0.0, 11.0, 12.0], [0.0, 1.0, 0.0]]])  # network 2
    labels = torch.tensor([2, 1])
    monkeypatch.setattr(loop, "predict", lambda models, loader, device, amp: (logits, labels))
    run = type("Run", (), {"nets": type("Nets", (), {"models": [None, None]})(), "device": "cpu",
                           "args": type("Args", (), {"amp": "off"})()})()
    scores, _, _ = loop._Evaluation._reported(type("E", (), {"run": run, "ensemble": True})(), None)
    assert scores.argmax(1).tolist() == [2, 1]  # summed logits; mean softmax would give [0, 1]
    assert logits.softmax(2).mean(0).argmax(1).tolist() == [0, 1]


def test_refinement_and_guessing_forward_each_view_separately():
    """One forward per view (DivideMix's 4 separate train-mode passes), so batch-norm statistics are per view."""
    torch.manual_seed(0)
    sizes = []
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    model.register_forward_pre_hook(lambda module, inputs: sizes.append(len(inputs[0])))
    peer = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    x = torch.randn(8, 1, 2, 2)
    batch = [(x, x + 1, torch.zeros(8, dtype=torch.long), torch.arange(8))]
    unlabelled = [(x - 1, x + 2, torch.zeros(8, dtype=torch.long), torch.arange(8))]
    args = type("Args", (), {"T": 0.5, "alpha": 4.0, "lambda_u": 25.0, "warmup": 0, "amp": "off"})()
    dm.mixmatch_one_epoch(model, peer, batch, unlabelled, torch.ones(8), torch.optim.SGD(model.parameters(), lr=0.0),
                          args, 1, 3, np.random.default_rng(0), torch.device("cpu"), desc="test")
    assert sizes == [8, 8, 8, 8, 32]  # u1, u2, x1, x2 one at a time, then the mixed batch of 4 x 8


@pytest.mark.parametrize("dataset, expected", [
    ("clothing1m", dict(unlabelled="ignore", warmup_penalty="on", epochs=81, num_batches=1000)),
    ("webvision", dict(unlabelled="ignore", warmup_penalty="off", epochs=81)),
])
def test_real_dataset_recipes_follow_dividemix(tmp_path, dataset, expected):
    config = _run(["--dataset", dataset, "--output", str(tmp_path), "--dry_run"])
    assert {k: config[k] for k in expected} == expected
    fine = _run(["--dataset", dataset, "--output", str(tmp_path), "--selector", "fine", "--dry_run"])
    assert fine["gmm_max_iter"] == 10
