"""The layer contract of DESIGN.md is enforced by import-linter (`lint-imports` in scripts/test.sh).

The contract itself lives in pyproject.toml; these tests show that it holds on this tree and that
it would catch an arrow running up the layers."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("cli", "hub", "gpu", "registry", "models", "pipelines", "serving", "training")
LINT = Path(sys.executable).with_name("lint-imports")


def _copy_tree(dest: Path) -> None:
    for package in PACKAGES:
        shutil.copytree(REPO / package, dest / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(REPO / "pyproject.toml", dest / "pyproject.toml")


def _lint(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT), "--no-cache"], cwd=cwd, env={"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=300,
    )


def test_the_tree_keeps_its_layers(tmp_path):
    _copy_tree(tmp_path)
    result = _lint(tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


@pytest.mark.parametrize(
    ("module", "planted"),
    [
        ("models/_planted.py", "import serving.config\n"),  # models -> serving runs up two floors
        ("hub/_planted.py", "from registry import ref\n"),  # the contract's floor imports nothing
        ("gpu/_planted.py", "import registry.ref\n"),  # siblings stay independent
        ("pipelines/_planted.py", "import training.metrics\n"),
        ("serving/_planted.py", "from cli.commands import _output\n"),  # the CLI is the top floor
    ],
)
def test_an_upward_import_breaks_the_contract(tmp_path, module, planted):
    _copy_tree(tmp_path)
    (tmp_path / module).write_text(planted)
    result = _lint(tmp_path)
    assert result.returncode != 0
    planted_name = module.removesuffix(".py").replace("/", ".")
    assert planted_name in result.stdout
