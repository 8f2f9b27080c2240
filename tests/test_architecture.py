"""The architecture, checked by libraries: import-linter's contracts (pyproject.toml) and ruff's lint and format."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CHECKED = ["patron", "features", "training", "serving", "benchmarks", "tests"]


def run(*command: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """A tool from this environment's bin folder, its output captured."""
    return subprocess.run(
        [str(BIN / command[0]), *command[1:]], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )


def test_import_contracts_are_kept() -> None:
    result = run("lint-imports", "--no-cache", "--no-logo")
    assert result.returncode == 0, result.stdout + result.stderr


def test_import_linter_sees_imports_inside_functions(tmp_path: Path) -> None:
    package = tmp_path / "house"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "low.py").write_text("def f():\n    from house.high import g\n\n    return g\n")
    (package / "high.py").write_text("def g():\n    return 1\n")
    (tmp_path / ".importlinter").write_text(
        "[importlinter]\nroot_package = house\n\n"
        "[importlinter:contract:layers]\nname = high over low\ntype = layers\n"
        "layers =\n    house.high\n    house.low\n"
    )
    result = run("lint-imports", "--no-cache", "--no-logo", cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "house.low -> house.high (l.2)" in result.stdout, result.stdout


def test_ruff_lint_is_clean() -> None:
    result = run("ruff", "check", "--no-cache", "--output-format", "concise", *CHECKED)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_kept() -> None:
    result = run("ruff", "format", "--check", "--no-cache", "--output-format", "concise", *CHECKED)
    assert result.returncode == 0, result.stdout + result.stderr
