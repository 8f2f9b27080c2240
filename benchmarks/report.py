"""Every benchmark's result: its table with provenance (command, versions, seeds, data fingerprint), written as
Markdown and JSON and logged as an MLflow run (provenance as params, the tables' numbers as metrics)."""

from __future__ import annotations

import json
import math
import platform
import shlex
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from features.tables.store import atomic_write_bytes, fingerprint, read_table
from patron.config import Settings

PACKAGES = ("patron", "lightgbm", "lifetimes", "scikit-learn", "pandas", "numpy", "duckdb")


def package_versions(packages: Sequence[str] = PACKAGES) -> dict[str, str]:
    """Installed versions of the packages a benchmark's figures depend on."""
    out = {"python": platform.python_version()}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def events_fingerprint(settings: Settings) -> str:
    """Fingerprint of the workspace's events (customer, item, time, type): the data a service benchmark served."""
    events = read_table(settings.tables_dir, "events", columns=["customer_id", "item_id", "ts", "type"])
    return "" if events is None else fingerprint(events)


def metric_key(text: Any) -> str:
    """A label as an MLflow metric key: every character other than a letter or digit becomes `_`."""
    return "".join(c if c.isalnum() else "_" for c in str(text)).strip("_")


def _cell(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _plain(v: Any) -> Any:
    """JSON for what json cannot write itself: numpy scalars and arrays, paths, anything else as text."""
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return str(v)


def _number(v: Any) -> bool:
    return isinstance(v, (int, float, np.number)) and math.isfinite(float(v))


@dataclass
class Table:
    """A further table of a report: its title, the columns shown after the label, and rows (dicts)."""

    title: str
    columns: list[str]
    rows: list[dict[str, Any]]
    label: str = "model"

    def markdown(self) -> list[str]:
        """The table's Markdown lines."""
        head = ["| " + " | ".join([self.label, *self.columns]) + " |", "|---|" + "---|" * len(self.columns)]
        return head + [
            "| " + " | ".join([str(r[self.label]), *(_cell(r.get(c)) for c in self.columns)]) + " |" for r in self.rows
        ]


@dataclass
class BenchReport:
    """Rows of metrics (per model, endpoint, interval, ...) on one dataset and protocol, with their provenance.

    `summary` holds headline figures (JSON and MLflow metrics, not the Markdown: notes say them in words), `tables`
    further tables (keyed), `details` what only the JSON keeps."""

    name: str
    dataset: str
    protocol: dict[str, Any]
    columns: list[str]
    rows: list[dict[str, Any]]
    fingerprint: str
    seeds: dict[str, Any]
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    label: str = "model"
    summary: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, Table] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    command: str = field(default_factory=lambda: shlex.join(["patron", *sys.argv[1:]]))
    versions: dict[str, str] = field(default_factory=package_versions)
    run_id: str | None = None

    def row(self, model: str) -> dict[str, Any]:
        """The row whose label is `model` (KeyError when absent)."""
        for r in self.rows:
            if r[self.label] == model:
                return r
        raise KeyError(model)

    def markdown(self) -> str:
        """The tables and the provenance as Markdown."""
        lines = [f"## {self.name}: {self.dataset}", "", *Table("", self.columns, self.rows, self.label).markdown()]
        for table in self.tables.values():
            lines += ["", f"### {table.title}", "", *table.markdown()] if table.rows else []
        lines += [
            "",
            *(f"- {n}" for n in self.notes),
            f"- protocol: {', '.join(f'{k}={v}' for k, v in self.protocol.items())}",
            f"- command: `{self.command}`; {self.seconds:.1f} s",
            f"- seeds: {', '.join(f'{k}={v}' for k, v in self.seeds.items())}; data fingerprint {self.fingerprint}",
            f"- versions: {', '.join(f'{k} {v}' for k, v in self.versions.items())}",
            "",
        ]
        return "\n".join(lines)

    def mlflow_params(self) -> dict[str, str]:
        """The provenance as MLflow params: the protocol's entries, command, dataset, fingerprint, seeds, versions."""
        return {
            **{k: str(v) for k, v in self.protocol.items()},
            "command": self.command,
            "dataset": self.dataset,
            "data_fingerprint": self.fingerprint,
            **{f"seed.{k}": str(v) for k, v in self.seeds.items()},
            **{f"version.{k}": v for k, v in self.versions.items()},
        }

    def mlflow_metrics(self) -> dict[str, float]:
        """The summary's numbers under their names, each table's as `[table.]label.column` (non-finite left out)."""
        out = {k: float(v) for k, v in self.summary.items() if _number(v)}
        tables = [("", self.label, self.rows), *((f"{key}.", t.label, t.rows) for key, t in self.tables.items())]
        for prefix, label, rows in tables:
            for r in rows:
                out.update(
                    {
                        f"{prefix}{metric_key(r[label])}.{metric_key(c)}": float(v)
                        for c, v in r.items()
                        if c != label and _number(v)
                    }
                )
        return out

    def write(
        self, folder: Path, stem: str, settings: Settings | None = None, params: dict[str, str] | None = None
    ) -> list[Path]:
        """Write <stem>.md and <stem>.json into folder (atomically); with `settings`, inside an MLflow run of that
        workspace's store tagged `stem`, which logs params (+ `params`), metrics and both files. Returns the paths."""
        if settings is None:
            return self._write_files(Path(folder), stem)
        import mlflow

        from training.mlops import tracking

        tracking.configure(settings)
        with mlflow.start_run(run_name=f"bench-{stem.removesuffix('_bench')}-{Path(self.dataset).name}") as run:
            self.run_id = run.info.run_id
            paths = self._write_files(Path(folder), stem)
            mlflow.set_tags(
                {
                    tracking.CODE_VERSION_TAG: tracking.code_version(),
                    tracking.MODEL_KIND_TAG: stem,
                    tracking.FINGERPRINT_TAG: self.fingerprint,
                }
            )
            mlflow.log_params({**self.mlflow_params(), **(params or {})})
            mlflow.log_metrics(self.mlflow_metrics())
            for path in paths:
                mlflow.log_artifact(str(path), "bench")
        return paths

    def _write_files(self, folder: Path, stem: str) -> list[Path]:
        md, js = folder / f"{stem}.md", folder / f"{stem}.json"
        atomic_write_bytes(md, self.markdown().encode())
        atomic_write_bytes(js, json.dumps(asdict(self), indent=2, default=_plain).encode())
        return [md, js]
