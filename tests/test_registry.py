"""A selector is one registered module: registering one (here, in the test) makes it a choice of both trainers'
flags, of ``engine.detect --selector`` and of the bench, with its option as a flag and its state checkpointed, with
no other edit."""
from __future__ import annotations

import importlib
import json
import pkgutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import fine.selection
from bench import detection as bench
from dividemix import train as dm
from dynamic_selection import train as ds
from engine import detect
from engine.detect import NetworkOutputs
from fine.errors import UserError
from fine.selection import REGISTRY, Inputs, Option, Selection, SelectorSpec, register
from tests.fixtures import synthetic_features


def _agree(inputs: Inputs, options: dict, state: dict) -> Selection:
    """Clean when the logit of the given label beats every other class's by ``agree_margin``; counts its rounds."""
    logits = inputs.logits.float()
    own = logits.gather(1, inputs.labels.long().unsqueeze(1)).squeeze(1)
    other = logits.scatter(1, inputs.labels.long().unsqueeze(1), -torch.inf).amax(1)
    state["rounds"] = state.get("rounds", 0) + 1
    mask = own - other >= options["agree_margin"]
    return Selection(clean_mask=mask, clean_prob=mask.float(), scores=own - other)


@pytest.fixture()
def agree():
    spec = register(SelectorSpec(
        name="agree", label="Agreement", needs=("logits",), select=_agree, init_state=lambda: {"rounds": 0},
        help="agree (the network's prediction agrees with the label)",
        options=(Option("agree_margin", float, 0.0, "agree: logit margin of the given label over the others"),)))
    yield spec
    del REGISTRY["agree"]


def test_every_module_of_the_package_is_imported_so_a_new_one_registers_itself():
    names = {f"fine.selection.{m.name}" for m in pkgutil.iter_modules(fine.selection.__path__)}
    assert names <= set(sys.modules)
    assert {"fine", "small-loss", "loss-gmm"} <= set(REGISTRY)


def test_a_registered_selector_is_a_choice_of_both_trainers_with_its_option_as_a_flag(agree, tmp_path):
    argv = ["--dataset", "digits", "--data_path", str(tmp_path), "--selector", "agree", "--agree_margin", "0.5",
            "--dry_run"]
    config = ds.main(ds.get_args_parser().parse_args([*argv, "--method", "fine"]))
    assert config["selector"] == "agree" and config["agree_margin"] == 0.5 and config["score"] is None
    config = dm.main(dm.get_args_parser().parse_args(argv))
    assert config["selector"] == "agree" and config["agree_margin"] == 0.5 and config["loss_history"] is None
    with pytest.raises(UserError, match="--agree_margin applies to --selector agree, not fine"):
        ds.main(ds.get_args_parser().parse_args([*argv[:4], "--method", "fine", "--agree_margin", "1", "--dry_run"]))


def test_a_registered_selector_runs_in_the_trainer_and_its_state_is_checkpointed(agree, tmp_path):
    summary = ds.main(ds.get_args_parser().parse_args([
        "--dataset", "digits", "--data_path", str(tmp_path / "data"), "--output", str(tmp_path / "runs"),
        "--device", "cpu", "--epochs", "3", "--batch_size", "128", "--method", "fine", "--selector", "agree",
        "--warmup", "1", "--every", "1"]))
    assert summary["label"] == "FINE (Agreement selector)" and 0 < summary["selection"]["precision"] <= 1
    ckpt = torch.load(Path(summary["run_dir"]) / "last.pt", weights_only=False)
    assert ckpt["trainer"]["selector_states"] == [{"rounds": 2}]


def test_a_registered_selector_is_a_choice_of_engine_detect_and_the_bench(agree, tmp_path):
    feats, labels, _ = synthetic_features(300, 8, 3, 0.2, spread=1.0, seed=1)
    noise = torch.randn(300, 3, generator=torch.Generator().manual_seed(0))
    logits = torch.nn.functional.one_hot(labels, 3).float() * 2 + noise
    paths = {}
    for name, array in (("features", feats), ("labels", labels), ("logits", logits)):
        paths[name] = str(tmp_path / f"{name}.npy")
        np.save(paths[name], array.numpy())
    argv = ["--features", paths["features"], "--labels", paths["labels"], "--out", str(tmp_path / "out"),
            "--selector", "agree", "--agree_margin", "0.25"]
    with pytest.raises(detect.UserError, match="--selector agree needs the network's outputs; pass --logits"):
        detect.main(argv)
    summary = detect.main([*argv, "--logits", paths["logits"]])
    assert summary["selector"] == "agree" and summary["options"] == {"agree_margin": 0.25}
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["selected"] == summary["selected"]
    assert "agree" in detect.get_args_parser().format_help()

    det = bench.parse_detector("agree:agree_margin=0.25")
    out = NetworkOutputs(feats, logits, labels, None, 3, 0)
    sel, score = bench.run_detector(det, out, None, {}, torch.ones(300, dtype=torch.bool))
    assert int(sel.clean_mask.sum()) == summary["selected"] and torch.equal(score, sel.scores)
    assert bench.trainer_flags(bench.parse_detector("agree:agree_margin=1", static=False)) == [
        "--method", "fine", "--selector", "agree", "--agree_margin", "1.0"]


def test_an_option_name_is_one_option_across_selectors(agree):
    clash = SelectorSpec(name="clash", label="Clash", needs=("logits",), select=_agree, help="clash",
                         options=(Option("agree_margin", int, 1, "another meaning"),))
    with pytest.raises(ValueError, match="redefines option 'agree_margin'"):
        register(clash)
    with pytest.raises(ValueError, match="already registered"):
        register(agree)
    assert "clash" not in REGISTRY and importlib.import_module("fine.selection.registry").REGISTRY is REGISTRY
