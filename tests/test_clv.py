"""Customer lifetime value: metrics on a hand-computed example, the target window, the bench and `train clv`."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from tests.test_churn_bench import write_cdnow_like
from training.value.clv import clv_metrics, future_spend, revenue_captured


def test_clv_metrics_on_a_hand_computed_example() -> None:
    actual = np.array([100, 0, 50, 10, 40, 0, 0, 0, 0, 0], dtype=float)  # total 200
    predicted = np.array([90, 5, 20, 30, 0, 1, 2, 3, 4, 6], dtype=float)
    m = clv_metrics(actual, predicted)
    assert m["mae"] == pytest.approx(121 / 10)  # |errors| 10+5+30+20+40+1+2+3+4+6
    assert m["rmse"] == pytest.approx(np.sqrt(3091 / 10))
    assert m["top10_revenue_share"] == pytest.approx(100 / 200)  # customer 0 only
    assert m["top20_revenue_share"] == pytest.approx(110 / 200)  # customers 0 and 3
    assert m["predicted_total_ratio"] == pytest.approx(161 / 200)
    assert clv_metrics(actual, actual + 1)["spearman"] == pytest.approx(1.0)
    assert clv_metrics(np.arange(5.0), -np.arange(5.0))["spearman"] == pytest.approx(-1.0)
    assert np.isnan(revenue_captured(np.zeros(4), np.arange(4.0), 0.5))  # no revenue at all: undefined
    with pytest.raises(ValueError):
        clv_metrics(np.array([1.0]), np.array([1.0]))


def test_future_spend_counts_only_the_horizon() -> None:
    cutoff = pd.Timestamp("2026-01-10")
    lines = pd.DataFrame(
        {
            "customer_id": ["a", "a", "a", "a", "b"],
            "ts": [
                cutoff - pd.Timedelta(days=1),
                cutoff,
                cutoff + pd.Timedelta(days=29),
                cutoff + pd.Timedelta(days=30),
                cutoff + pd.Timedelta(days=31),
            ],
            "value": [1.0, 2.0, 4.0, 8.0, 16.0],
        }
    )
    assert future_spend(lines, cutoff, 30).to_dict() == {"a": 6.0}


def test_bench_clv_cdnow_compares_both_models_on_the_same_customers(tmp_path: Path) -> None:
    from benchmarks.clv import run_clv_bench
    from benchmarks.datasets import bench_settings
    from benchmarks.report import metric_key
    from features.ingest.pipeline import ingest_source
    from patron.config import load_settings

    settings = load_settings(
        workspace=str(tmp_path / "ws"),
        clv={
            "folds": 3,
            "btyd_penalizer": 0.001,
            "num_boost_round": 200,
            "early_stopping_rounds": 20,
            "params": {"min_data_in_leaf": 20},
        },
    )
    ingest_source(
        bench_settings(settings, "cdnow"),
        "cdnow",
        path=write_cdnow_like(tmp_path / "raw" / "CDNOW_master.txt", 400, seed=3),
    )
    report, paths = run_clv_bench(settings, "cdnow", echo=lambda _: None)
    saved = json.loads(paths[1].read_text())
    assert paths[0].name == "clv_bench.md" and saved["protocol"]["customers"] == 400
    assert saved["protocol"]["horizon_days"] == 273 and saved["protocol"]["actual_total"] > 0
    assert [r["model"].split(" ")[0] for r in saved["rows"]] == ["Patron", "BG/NBD"]
    for row in report.rows:
        assert row["mae"] > 0 and row["rmse"] >= row["mae"]
        assert 0.2 <= row["top20_revenue_share"] <= 1.0 and row["spearman"] > 0.2
    # logged as an MLflow run of the bench workspace: provenance as params, the table's numbers as metrics
    run = mlflow.MlflowClient(bench_settings(settings, "cdnow").tracking_uri).get_run(saved["run_id"])
    assert run.data.params["data_fingerprint"] == saved["fingerprint"] and run.data.params["horizon_days"] == "273"
    assert run.data.metrics[f"{metric_key(report.rows[1]['model'])}.mae"] == pytest.approx(report.rows[1]["mae"])


def test_train_clv_logs_and_registers_the_model(ingested_workspace) -> None:
    from training.value.clv import train_clv

    settings = ingested_workspace.settings
    settings = settings.model_copy(
        update={"clv": settings.clv.model_copy(update={"horizon_days": 120, "num_boost_round": 150, "folds": 3})}
    )
    result = train_clv(settings)
    assert result.metrics["mae"] > 0 and 0 < result.metrics["top20_revenue_share"] <= 1
    assert "btyd_mae" in result.metrics
    run = mlflow.MlflowClient(settings.tracking_uri).get_run(result.run_id)
    assert run.data.params["horizon_days"] == "120" and run.data.metrics["mae"] == pytest.approx(result.metrics["mae"])
    version = mlflow.MlflowClient(settings.tracking_uri).get_model_version(
        settings.tracking.clv_model, str(result.model_version)
    )
    assert version.run_id == result.run_id and version.tags["patron.primary_metric"] == "mae"  # tagged at creation
    assert float(version.tags["patron.primary_value"]) == pytest.approx(result.metrics["mae"])
    booster = mlflow.lightgbm.load_model(f"models:/{settings.tracking.clv_model}/{result.model_version}")
    assert "bg_gg_clv" in booster.feature_name() and "days_since_last_purchase" in booster.feature_name()
