"""Data flows one way: features -> training -> serving. A lower layer never imports a higher one."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HIGHER = {"features": {"training", "serving"}, "training": {"serving"}}


def imported_packages(path: Path) -> set[str]:
    """Top-level package names a module imports, at module level or inside functions."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("layer", sorted(HIGHER))
def test_no_module_imports_a_higher_layer(layer: str) -> None:
    offenders = {str(p.relative_to(ROOT)): sorted(imported_packages(p) & HIGHER[layer])
                 for p in sorted((ROOT / layer).rglob("*.py"))}
    assert {p: bad for p, bad in offenders.items() if bad} == {}


def test_the_check_sees_imports_inside_functions(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("import os\n\ndef f():\n    from serving.champions.load import load_champions\n")
    assert imported_packages(module) == {"os", "serving"}
