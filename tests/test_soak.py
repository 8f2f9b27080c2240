"""`patron bench soak`, shortened: the real service under mixed open-loop load, its report's fields and verdict."""

from __future__ import annotations

import json

import pytest
from mlflow.tracking import MlflowClient

from benchmarks.soak import memory_growth, soak_markdown

pytestmark = pytest.mark.integration

SECONDS = 15
RATE = 20.0
INTERVAL_S = 5.0


def test_memory_growth_counts_from_the_end_of_warm_up() -> None:
    samples = [{"t_s": t, "total_mb": mb} for t, mb in [(0, 100), (5, 400), (10, 500), (15, 520), (20, 510)]]
    growth = memory_growth(samples, warmup_s=8)
    assert growth["baseline_mb"] == 500 and growth["end_mb"] == 510 and growth["peak_mb"] == 520
    assert growth["growth"] == pytest.approx(0.02) and growth["peak_growth"] == pytest.approx(0.04)


def test_a_short_soak_reports_errors_latency_per_interval_and_memory(trained_workspace) -> None:
    from benchmarks.soak import run_soak
    from tests.conftest import free_port

    ws = trained_workspace
    settings = ws.settings.model_copy(
        update={"soak": ws.settings.soak.model_copy(update={"port": free_port(), "sample_s": 1.0})}
    )
    report = run_soak(
        settings, ws.config, SECONDS / 60, rate=RATE, workers=2, interval_s=INTERVAL_S, echo=lambda _: None
    )
    summary = report.summary
    assert summary["sent"] == int(RATE * SECONDS) and summary["errors"] == 0
    assert [row["start_s"] for row in report.rows] == [0.0, 5.0, 10.0]
    assert sum(row["requests"] for row in report.rows) == summary["sent"]
    first = report.rows[0]
    assert 0 < first["p50_ms"] <= first["p99_ms"]
    assert {"p99_ms /recommend", "p99_ms /churn", "p99_ms /events"} <= set(first)
    samples = report.details["memory_samples"]
    assert len(samples) >= SECONDS // 3 and all(len(s["processes_mb"]) >= 3 for s in samples)  # supervisor + 2 workers
    memory = report.details["memory"]
    assert memory["baseline_mb"] > 0 and memory["growth"] < 0.10 and summary["ok"]
    out = settings.outputs_dir / "bench_soak"
    assert json.loads((out / "soak.json").read_text())["summary"]["sent"] == summary["sent"]
    assert (out / "soak.md").read_text() == report.markdown()
    assert f"{summary['sent']} requests" in soak_markdown(report) and "Verdict: **pass**" in soak_markdown(report)
    run = MlflowClient(settings.tracking_uri).get_run(report.run_id)  # logged with the table's numbers
    assert run.data.metrics["sent"] == summary["sent"] and run.data.metrics["0.requests"] == first["requests"]
