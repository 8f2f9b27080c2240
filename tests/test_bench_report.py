"""The one benchmark report: Markdown and JSON of the table and its provenance, and the MLflow run that logs them."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from benchmarks.report import BenchReport, Table, metric_key
from patron.config import load_settings


def _report(**extra) -> BenchReport:
    return BenchReport(
        name="Churn benchmark",
        dataset="cdnow",
        protocol={"cutoff": "1997-10-01", "customers": 2},
        columns=["roc_auc", "ece"],
        rows=[
            {"model": "Patron (LightGBM)", "roc_auc": 0.75, "ece": None},
            {"model": "recency", "roc_auc": 0.625, "ece": math.nan},
        ],
        fingerprint="abc",
        seeds={"bench": 42},
        seconds=1.25,
        notes=["label: no purchase"],
        command="patron bench churn --dataset cdnow",
        versions={"python": "3.11.9"},
        **extra,
    )


def test_markdown_is_the_table_then_the_provenance() -> None:
    assert _report().markdown() == (
        "## Churn benchmark: cdnow\n\n| model | roc_auc | ece |\n|---|---|---|\n"
        "| Patron (LightGBM) | 0.7500 |  |\n| recency | 0.6250 |  |\n\n- label: no purchase\n"
        "- protocol: cutoff=1997-10-01, customers=2\n- command: `patron bench churn --dataset cdnow`; 1.2 s\n"
        "- seeds: bench=42; data fingerprint abc\n- versions: python 3.11.9\n"
    )
    report = _report(
        tables={
            "steps": Table("Steps", ["value"], [{"step": 1, "value": 0.5}], label="step"),
            "none": Table("Empty", ["value"], []),
        }
    )
    assert "\n### Steps\n\n| step | value |\n|---|---|\n| 1 | 0.5000 |\n" in report.markdown()
    assert "Empty" not in report.markdown()  # a table without rows is left out
    assert report.row("recency")["roc_auc"] == 0.625
    with pytest.raises(KeyError):
        report.row("nobody")


def test_write_logs_provenance_and_every_table_number_as_an_mlflow_run(tmp_path: Path) -> None:
    settings = load_settings(workspace=str(tmp_path / "ws"))
    report = _report(
        summary={"gap": 0.05, "ok": True, "label": "text"},
        tables={"steps": Table("Steps", ["value"], [{"step": 1, "value": 0.5}], label="step")},
    )
    md, js = report.write(tmp_path / "out", "churn_bench", settings, params={"extra": "1"})
    saved = json.loads(js.read_text())
    assert saved["run_id"] == report.run_id and md.read_text() == report.markdown()
    assert saved["rows"][0] == {"model": "Patron (LightGBM)", "roc_auc": 0.75, "ece": None}
    assert saved["tables"]["steps"]["rows"] == [{"step": 1, "value": 0.5}] and saved["summary"]["ok"] is True
    client = MlflowClient(settings.tracking_uri)
    run = client.get_run(report.run_id)
    assert run.data.tags["patron.model"] == "churn_bench" and run.data.tags["patron.eval_fingerprint"] == "abc"
    assert {
        k: run.data.params[k]
        for k in ("cutoff", "command", "dataset", "data_fingerprint", "seed.bench", "version.python", "extra")
    } == {
        "cutoff": "1997-10-01",
        "command": "patron bench churn --dataset cdnow",
        "dataset": "cdnow",
        "data_fingerprint": "abc",
        "seed.bench": "42",
        "version.python": "3.11.9",
        "extra": "1",
    }
    # every finite number of the tables, the summary's under their own names; text, None and NaN left out
    assert run.data.metrics == {
        f"{metric_key('Patron (LightGBM)')}.roc_auc": 0.75,
        "recency.roc_auc": 0.625,
        "steps.1.value": 0.5,
        "gap": 0.05,
        "ok": 1.0,
    }
    assert {a.path for a in client.list_artifacts(run.info.run_id, "bench")} == {
        "bench/churn_bench.md",
        "bench/churn_bench.json",
    }
    # without settings: the files only
    other = _report()
    other.write(tmp_path / "plain", "churn_bench")
    assert other.run_id is None and (tmp_path / "plain" / "churn_bench.json").exists()
