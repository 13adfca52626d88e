"""Every paper script runs the published configuration: each hyperparameter the script resolves to equals the value
of the published run it reproduces, whose source (repository:path:line) tests/published_configs.json records.

The only exceptions are the deliberate differences listed in DIFFERENCES, each a row of the README's "Differences
from the published code" table.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_scripts import ROOT, TRAINERS, recorded_commands, resolve

PUBLISHED = json.loads((Path(__file__).with_name("published_configs.json")).read_text())
# (flag, published value, ours) -> why we differ; each is a row of the README's differences table
DIFFERENCES = {
    ("aug_features", True, False): "selection features from un-augmented images (FINE_official extracts them from "
                                   "its augmenting training loader)",
}


@pytest.mark.parametrize("script", sorted(PUBLISHED), ids=str)
def test_script_resolves_to_the_published_configuration(script, tmp_path):
    command = recorded_commands(Path(script), tmp_path)[0]
    ours = resolve(TRAINERS[Path(script).parts[1]], command[2:])
    wrong = {}
    for flag, published in PUBLISHED[script].items():
        assert published["source"], f"{script}: {flag} has no source"
        assert flag in ours, f"{script}: the published {flag} is not a flag of the trainer"
        if ours[flag] != published["value"] and (flag, published["value"], ours[flag]) not in DIFFERENCES:
            wrong[flag] = (ours[flag], published["value"], published["source"])
    assert not wrong, f"{script}: ours, published, source: {wrong}"


def test_every_difference_is_in_the_readme_table():
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Differences from the published code"):]
    for flag, _, _ in DIFFERENCES:
        assert f"--{flag}" in table


def test_every_paper_script_with_a_published_run_is_checked():
    scripts = {str(p.relative_to(ROOT)) for p in ROOT.glob("scripts/*/*/*.sh")}
    without = scripts - set(PUBLISHED)
    # CIFAR-N and the FINE-only WebVision run have no published configuration
    assert without == {s for s in scripts if "cifar10n" in s or "cifar100n" in s
                       or s.endswith("dynamic_selection/webvision/fine.sh")}
