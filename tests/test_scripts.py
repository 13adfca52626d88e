"""The experiment scripts: each is its variables plus one call of scripts/common.sh, and the configuration it runs is
exactly what its trainer resolves from the recipe for that dataset, method and noise (so the two cannot drift)."""
from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import dividemix.train as dm
import dynamic_selection.train as ds

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = sorted(p.relative_to(ROOT) for p in ROOT.glob("scripts/*/*/*.sh"))
TRAINERS = {"dynamic_selection": ds, "dividemix": dm}
# The flags that say which experiment a script is; every other value must come from the recipe.
IDENTITY = ("dataset", "method", "loss", "selector", "noise_kind", "noise_rate", "noise_label", "seed", "data_path",
            "output", "imagenet_path")


def recorded_commands(script: Path, tmp_path: Path, *extra: str) -> list[list[str]]:
    """The trainer command lines ``script`` runs, recorded by a stand-in interpreter instead of running them."""
    log = tmp_path / "argv.jsonl"
    fake = tmp_path / "python"
    fake.write_text(f"#!{sys.executable}\nimport json, sys\n"
                    f"open({str(log)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n")
    fake.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("DATA_PATH", "OUTPUT", "SEEDS", "IMAGENET_PATH")}
    env.update(PYTHON=str(fake), SEEDS="1 2")
    subprocess.run(["bash", str(ROOT / script), *extra], cwd=tmp_path, env=env, check=True)
    return [json.loads(line) for line in log.read_text().splitlines()]


def resolve(trainer, argv: list[str]) -> dict:
    """The configuration the trainer would run for ``argv`` (its ``--dry_run`` output, computed in-process)."""
    with contextlib.redirect_stdout(io.StringIO()):
        return trainer.main(trainer.get_args_parser().parse_args([*argv, "--dry_run"]))


@pytest.mark.parametrize("script", SCRIPTS, ids=str)
def test_script_runs_its_recipe(script, tmp_path):
    commands = recorded_commands(script, tmp_path)
    assert [c[:2] for c in commands] == [["-m", f"{script.parts[1]}.train"]] * 2  # one run per seed
    assert [c[c.index("--seed") + 1] for c in commands] == ["1", "2"]
    trainer = TRAINERS[script.parts[1]]
    ran = resolve(trainer, commands[0][2:])
    identity = [x for k in IDENTITY if ran.get(k) is not None
                for x in (f"--{k}", *map(str, ran[k] if isinstance(ran[k], list) else [ran[k]]))]
    assert ran == resolve(trainer, identity)
    text = (ROOT / script).read_text()
    assert text.count("run_trainer") == 1 and "python" not in text.replace("python -m engine.report", "")


def test_extra_arguments_reach_the_trainer_last_and_win(tmp_path):
    script = Path("scripts/dynamic_selection/cifar10/fine_sym50.sh")
    commands = recorded_commands(script, tmp_path, "--epochs", "90", "--resume")
    assert commands[0][-3:] == ["--epochs", "90", "--resume"]
    assert resolve(ds, commands[0][2:])["epochs"] == 90


def test_a_script_dry_run_prints_the_resolved_configuration(tmp_path):
    env = dict(os.environ, SEEDS="4", PYTHON=sys.executable, OUTPUT=str(tmp_path / "runs"))
    out = subprocess.run(["bash", "scripts/dividemix/cifar10/f_dividemix_sym90.sh", "--dry_run"], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=True)
    config = json.loads(out.stdout)
    assert (config["trainer"], config["selector"], config["noise_rate"]) == ("dividemix", "fine", 0.9)
    assert config["seed"] == 4
    assert not (tmp_path / "runs").exists()  # nothing was written
