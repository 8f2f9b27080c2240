"""A benchmark's result table with its provenance (command, versions, seeds, data fingerprint), as Markdown and JSON."""

from __future__ import annotations

import math
import platform
import shlex
import sys
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from features.tables.store import atomic_write_bytes, write_json

_PACKAGES = ("patron", "lightgbm", "lifetimes", "scikit-learn", "pandas", "numpy", "duckdb")


def package_versions() -> dict[str, str]:
    """Installed versions of the packages a benchmark's figures depend on."""
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


@dataclass
class BenchReport:
    """Rows of metrics per model on one dataset and protocol."""

    name: str
    dataset: str
    protocol: dict[str, Any]
    columns: list[str]
    rows: list[dict[str, Any]]
    fingerprint: str
    seeds: dict[str, int]
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    command: str = field(default_factory=lambda: shlex.join(["patron", *sys.argv[1:]]))
    versions: dict[str, str] = field(default_factory=package_versions)

    def row(self, model: str) -> dict[str, Any]:
        """The row of one model (KeyError when absent)."""
        for r in self.rows:
            if r["model"] == model:
                return r
        raise KeyError(model)

    def markdown(self) -> str:
        """The table and its provenance as Markdown."""
        def cell(v: Any) -> str:
            if v is None or (isinstance(v, float) and math.isnan(v)):
                return ""
            return f"{v:.4f}" if isinstance(v, float) else str(v)

        lines = [f"## {self.name}: {self.dataset}", "",
                 "| model | " + " | ".join(self.columns) + " |", "|---|" + "---|" * len(self.columns)]
        lines += ["| " + " | ".join([r["model"], *(cell(r.get(c)) for c in self.columns)]) + " |" for r in self.rows]
        lines += ["", *(f"- {n}" for n in self.notes),
                  f"- protocol: {', '.join(f'{k}={v}' for k, v in self.protocol.items())}",
                  f"- command: `{self.command}`; {self.seconds:.1f} s",
                  f"- seeds: {', '.join(f'{k}={v}' for k, v in self.seeds.items())}; "
                  f"data fingerprint {self.fingerprint}",
                  f"- versions: {', '.join(f'{k} {v}' for k, v in self.versions.items())}", ""]
        return "\n".join(lines)

    def write(self, folder: Path, stem: str) -> list[Path]:
        """Write <stem>.md and <stem>.json into folder (atomically); returns both paths."""
        md = folder / f"{stem}.md"
        atomic_write_bytes(md, self.markdown().encode())
        return [md, write_json(asdict(self), folder / f"{stem}.json")]
