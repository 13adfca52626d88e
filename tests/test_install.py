"""The checkout installs like a library: ``pip install .`` puts the packages, their data and the console commands
in place, with requirements.txt as the declared dependencies, and they work from any directory."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"fine", "data_loader", "engine", "dynamic_selection", "dividemix"}


def _requirements() -> list[str]:
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The checkout installed into a fresh folder (no dependencies: torch and the rest come from this environment);
    returns (site folder, environment whose PYTHONPATH is only that folder)."""
    tmp = tmp_path_factory.mktemp("install")
    source = tmp / "source"  # a copy, so the build leaves nothing in the checkout
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".venv", ".git", "runs", "data", "__pycache__",
                                                                ".pytest_cache", ".ruff_cache", "build", "*.egg-info"))
    site = tmp / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    "--target", str(site), str(source)], check=True, capture_output=True, text=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(site)}
    return site, env


@pytest.mark.slow
def test_installs_packages_data_commands_and_requirements(installed):
    site, _ = installed
    top = {p.name for p in site.iterdir() if (p / "__init__.py").is_file()}
    assert top == PACKAGES  # no tests/ or bench/ among the installed packages
    assert (site / "engine" / "published.csv").is_file()
    assert {p.name for p in (site / "bin").iterdir()} >= {"fine-detect", "fine-report"}
    metadata = next(site.glob("fine-*.dist-info")) / "METADATA"
    declared = [line.split(":", 1)[1].strip() for line in metadata.read_text().splitlines()
                if line.startswith("Requires-Dist:")]
    assert declared == _requirements()


@pytest.mark.slow
def test_library_and_detector_run_outside_the_checkout(installed, tmp_path):
    site, env = installed
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 8)) * 4
    labels = np.repeat(np.arange(3), 40)
    features = (centres[labels] + rng.normal(size=(120, 8))).astype(np.float32)
    noisy = labels.copy()
    noisy[:12] = (labels[:12] + 1) % 3
    np.save(tmp_path / "f.npy", features)
    np.save(tmp_path / "y.npy", noisy)
    work = tmp_path / "elsewhere"
    work.mkdir()
    code = ("import fine, fine.selection, torch, numpy as np\n"
            "from fine.selection import fine_select\n"
            "sel = fine_select(torch.from_numpy(np.load('../f.npy')), torch.from_numpy(np.load('../y.npy')), 3)\n"
            "print(fine.__file__); print(int(sel.clean_mask[:12].sum()), int(sel.clean_mask[12:].sum()))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=work, env=env, check=True, capture_output=True, text=True)
    location, counts = out.stdout.split("\n")[:2]
    assert Path(location).is_relative_to(site)  # the installed copy, not the checkout
    wrong_kept, clean_kept = map(int, counts.split())
    assert wrong_kept <= 2 and clean_kept >= 90
    for command in ([sys.executable, "-m", "engine.detect"], [str(site / "bin" / "fine-detect")]):
        result = tmp_path / command[-1].replace(".", "_").replace("/", "_")
        subprocess.run(command + ["--features", "../f.npy", "--labels", "../y.npy", "--out", str(result)],
                       cwd=work, env=env, check=True, capture_output=True, text=True)
        assert (result / "label_issues.csv").is_file() and (result / "summary.json").is_file()
    bad = subprocess.run([str(site / "bin" / "fine-report"), str(tmp_path / "no_runs")], cwd=work, env=env,
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and bad.stderr.count("\n") == 1
