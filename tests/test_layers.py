"""The package layers import one way: library (fine) <- data_loader <- engine (run machinery) <- trainers.

Every ``import`` statement of every module is read from its source (also those inside functions), so a lazy upward
import is caught too.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# package -> the project packages it may import
ALLOWED = {
    "fine": {"fine"},
    "data_loader": {"fine", "data_loader"},
    "engine": {"fine", "data_loader", "engine"},
    "dynamic_selection": {"fine", "data_loader", "engine", "dynamic_selection"},
    "dividemix": {"fine", "data_loader", "engine", "dividemix"},
}
PROJECT = set(ALLOWED) | {"bench", "tests"}


def imported_packages(path: Path) -> set[str]:
    """The top-level names ``path`` imports (absolute imports; the project uses no relative ones)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import"
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_the_layers_below(package):
    wrong = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        upward = (imported_packages(path) & PROJECT) - ALLOWED[package]
        if upward:
            wrong[str(path.relative_to(ROOT))] = sorted(upward)
    assert not wrong, f"imports against the layering: {wrong}"


def test_the_checker_sees_function_level_imports(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from engine.loop import fit\n    import dividemix.train\n")
    assert imported_packages(module) == {"engine", "dividemix"}


def test_importing_the_selector_loads_no_logging_backend_and_no_upper_layer():
    code = ("import sys, fine.selection, fine.features, fine.losses, fine.models, fine.evaluation; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'tensorboard', 'data_loader', 'engine', "
            "'dynamic_selection', 'dividemix', 'sklearn'}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
