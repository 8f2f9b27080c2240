"""`patron bench churn`: customer-disjoint folds, the lifetimes BG/NBD baseline and the CDNOW protocol end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from lifetimes import BetaGeoFitter
from mlflow.tracking import MlflowClient

from benchmarks.churn import run_churn_bench
from benchmarks.report import metric_key
from features.pit.purchase_sequence import purchases
from training.mlops.splits import customer_folds
from training.value import btyd


def write_cdnow_like(path: Path, customers: int, seed: int) -> Path:
    """A CDNOW-format log: first purchases in Q1 1997, Poisson repeat purchases until a geometric dropout."""
    rng = np.random.default_rng(seed)
    start, end = pd.Timestamp("1997-01-01"), pd.Timestamp("1998-06-30")
    lines = []
    for c in range(1, customers + 1):
        day = start + pd.Timedelta(days=int(rng.integers(0, 90)))
        rate, p_drop = rng.gamma(1.0, 1 / 40), rng.beta(1, 3)
        while day <= end:
            lines.append(f" {c:05d} {day:%Y%m%d} {int(rng.integers(1, 4)):2d} {rng.gamma(2, 15):8.2f}")
            if rng.uniform() < p_drop:
                break
            day += pd.Timedelta(days=1 + int(rng.exponential(1 / rate)))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def cdnow_lines(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    from features.ingest.pipeline import ingest_source
    from patron.config import load_settings

    root = tmp_path_factory.mktemp("btyd")
    settings = load_settings(workspace=str(root / "ws"))
    ingest_source(settings, "cdnow", path=write_cdnow_like(root / "CDNOW_master.txt", 300, seed=5))
    return purchases(settings)


def test_customer_folds_never_put_a_customer_on_both_sides() -> None:
    ids = pd.Series([f"c{i % 40}" for i in range(200)])  # every customer on 5 stacked rows
    y = np.array([i % 40 < 12 for i in range(200)], dtype=int)
    folds = customer_folds(ids, y, folds=5, seed=0)
    assert len(folds) == 5
    tested = np.concatenate([test for _, test in folds])
    assert sorted(tested) == list(range(200))  # each row tested exactly once
    for train, test in folds:
        assert not set(ids.iloc[train]) & set(ids.iloc[test])
        assert 0 < y[test].mean() < 1


def test_bgnbd_outputs_come_from_lifetimes(cdnow_lines: pd.DataFrame) -> None:
    cutoff = pd.Timestamp("1997-10-01")
    summary = btyd.rfm_summary(cdnow_lines, cutoff, "W")
    assert summary["T"].max() <= 39 and (summary["recency"] <= summary["T"]).all()
    model = btyd.fit_bgnbd(summary)
    direct = BetaGeoFitter().fit(summary["frequency"], summary["recency"], summary["T"])
    out = btyd.bgnbd_outputs(model, summary, 39)
    np.testing.assert_allclose(
        out["bg_p_alive"],
        direct.conditional_probability_alive(summary["frequency"], summary["recency"], summary["T"]),
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        out["bg_expected_purchases"],
        direct.conditional_expected_number_of_purchases_up_to_time(
            39, summary["frequency"], summary["recency"], summary["T"]
        ),
        rtol=1e-6,
    )
    p = out["bg_p_no_purchase"]
    assert ((p >= 1 - out["bg_p_alive"] - 1e-12) & (p <= 1)).all()
    # Longer horizons leave less room for no purchase at all; a zero horizon leaves nothing but "no purchase".
    assert (btyd.bgnbd_outputs(model, summary, 78)["bg_p_no_purchase"] <= p + 1e-12).all()
    np.testing.assert_allclose(btyd.bgnbd_outputs(model, summary, 0)["bg_p_no_purchase"], 1.0)
    with pytest.raises(ValueError, match="freq"):
        btyd.rfm_summary(cdnow_lines, cutoff, "M")


def test_bench_churn_cdnow_protocol_writes_the_table(tmp_path: Path) -> None:
    from benchmarks.datasets import bench_settings
    from features.ingest.pipeline import ingest_source
    from patron.config import load_settings

    settings = load_settings(
        workspace=str(tmp_path / "ws"),
        bench={
            "folds": 3,
            "num_boost_round": 200,
            "early_stopping_rounds": 20,
            "grid": [{"min_data_in_leaf": 20}, {"min_data_in_leaf": 60}],
        },
    )
    bench = bench_settings(settings, "cdnow")
    ingest_source(bench, "cdnow", path=write_cdnow_like(tmp_path / "raw" / "CDNOW_master.txt", 400, seed=9))
    report, paths = run_churn_bench(settings, "cdnow", echo=lambda _: None)
    assert [p.name for p in paths] == ["churn_bench.md", "churn_bench.json"]
    assert all(p.parent == settings.workspace / "bench" / "cdnow" for p in paths)
    saved = json.loads(paths[1].read_text())
    assert saved["protocol"]["cutoff"] == "1997-10-01" and saved["protocol"]["customers"] == 400
    assert saved["fingerprint"] and saved["versions"]["lifetimes"] == "0.11.3" and saved["seeds"]["bench"] == 42
    models = [r["model"] for r in saved["rows"]]
    assert any(m.startswith("Patron") for m in models) and any(m.startswith("BG/NBD") for m in models)
    assert any(m.startswith("recency") for m in models)
    for row in saved["rows"]:
        assert 0.5 < row["roc_auc"] <= 1.0  # every model beats chance on a log with real dropout
    assert "| model | roc_auc |" in paths[0].read_text()
    patron = report.row(models[0])
    assert 0.0 <= patron["ece"] <= 1.0 and 0.0 <= patron["brier"] <= 0.25
    # logged as an MLflow run of the bench workspace: provenance as params, the table's numbers as metrics
    client = MlflowClient(bench.tracking_uri)
    run = client.get_run(saved["run_id"])
    assert run.data.tags["patron.model"] == "churn_bench" and run.data.params["seed.bench"] == "42"
    assert run.data.metrics[f"{metric_key(models[0])}.roc_auc"] == pytest.approx(patron["roc_auc"])
    assert {a.path for a in client.list_artifacts(run.info.run_id, "bench")} == {
        "bench/churn_bench.md",
        "bench/churn_bench.json",
    }
