"""`patron features build` on the default synthetic retailer (5000 customers, 540 days): fast and sensible."""

from __future__ import annotations

import time

import pandas as pd
import pytest

from features.pit.build import build_features, cutoff_plan, training_set
from patron.config import Settings, load_settings

synth = pytest.importorskip("features.synthetic.generate")


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    settings = load_settings(workspace=str(tmp_path_factory.mktemp("synthetic")))
    synth.generate(settings, out=settings.tables_dir)  # already in contract form
    return settings


def test_build_on_default_synthetic_data_is_fast_and_sensible(synthetic: Settings) -> None:
    plan = cutoff_plan(synthetic)
    started = time.perf_counter()
    report = build_features(synthetic, cutoff=plan.test)
    elapsed = time.perf_counter() - started
    assert elapsed < 30, f"feature build took {elapsed:.1f} s (budget 30 s on 2 cores)"
    assert 4000 <= report.customers <= synthetic.synth.customers
    assert 0.3 * report.customers < report.active < report.customers
    assert 0.05 < report.base_rate < 0.6
    assert report.features > 50 and report.interactions > report.customers
    feats = pd.read_parquet(report.paths[0])
    assert feats["customer_id"].is_unique and len(feats) == report.customers
    assert feats["days_since_last_purchase"].min() >= 0


def test_training_set_over_the_configured_cutoffs(synthetic: Settings) -> None:
    plan = cutoff_plan(synthetic)
    train = training_set(synthetic, plan.train)
    assert sorted(train["cutoff"].unique()) == plan.train
    assert set(train["churned"].unique()) == {0, 1}
    assert not train.duplicated(["customer_id", "cutoff"]).any()
    # The churned share tracks recency: long-silent customers churn more often.
    silent = train["days_since_last_purchase"] > train["days_since_last_purchase"].median()
    assert train.loc[silent, "churned"].mean() > train.loc[~silent, "churned"].mean()
