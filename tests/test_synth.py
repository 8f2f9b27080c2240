"""The synthetic retailer: contract tables, determinism, ground truth, behaviour and the churn oracle."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from features.synthetic.generate import generate
from features.synthetic.oracle import churn_rates, oracle_churn_probability
from features.tables.contract import INGEST_ORDER, OFFER_TYPES, TABLES
from patron.config import load_settings

SMALL = {"customers": 300, "items": 120, "days": 200}


def _settings(root, **synth):
    return load_settings(workspace=str(root), seed=3, synth=synth)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    settings = _settings(tmp_path_factory.mktemp("synth"))
    report = generate(settings, **SMALL)
    tables = {name: pd.read_parquet(report.out / f"{name}.parquet") for name in INGEST_ORDER}
    return settings, report, tables


@pytest.fixture(scope="module")
def moderate(tmp_path_factory):
    """Large enough for the oracle's calibration to be measurable."""
    settings = _settings(tmp_path_factory.mktemp("synth_oracle"), oracle_replicas=32)
    report = generate(settings, customers=2000, items=200, days=300)
    return settings, report


def _labels(events: pd.DataFrame, cutoff: pd.Timestamp, settings) -> pd.DataFrame:
    """Churn labels straight from the events (interfaces item 2)."""
    f = settings.features
    buy = events[events["type"] == "purchase"]
    before = buy[(buy.ts >= cutoff - pd.Timedelta(days=f.lookback_days)) & (buy.ts < cutoff)]
    after = buy[(buy.ts >= cutoff) & (buy.ts < cutoff + pd.Timedelta(days=f.horizon_days))]
    active = pd.Index(before.customer_id.unique())
    return pd.DataFrame({"customer_id": active, "churned": (~active.isin(after.customer_id)).astype(int)})


def test_every_table_passes_the_contract(small):
    settings, report, tables = small
    known = {"customers": set(tables["customers"].customer_id), "products": set(tables["products"].item_id)}
    for name in INGEST_ORDER:
        assert len(tables[name]) > 0, name
        validated = TABLES[name].schema(known).validate(tables[name])
        assert len(validated) == len(tables[name]) == report.rows[name]
    assert len(tables["customers"]) == SMALL["customers"]
    assert len(tables["products"]) == SMALL["items"]
    assert tables["customers"].customer_id.iloc[0] == "C0000001"
    assert tables["products"].item_id.iloc[0] == "I00001"
    assert set(tables["events"]["type"]) == {"view", "cart", "purchase", "return"}
    end = pd.Timestamp(report.cutoff) + pd.Timedelta(days=settings.features.test_cutoff_days_before_end)
    assert tables["events"].ts.max() < end and tables["events"].ts.max() >= end - pd.Timedelta(days=1)
    for name, column in (("tickets", "opened_at"), ("tickets", "resolved_at"), ("offers", "redeemed_at")):
        assert (tables[name][column].dropna() < end).all(), column


def test_same_seed_gives_byte_identical_tables(tmp_path):
    a = generate(_settings(tmp_path / "a"), customers=120, items=40, days=90)
    b = generate(_settings(tmp_path / "b"), customers=120, items=40, days=90)
    c = generate(_settings(tmp_path / "c"), customers=120, items=40, days=90, seed=4)
    for name in INGEST_ORDER:
        assert (a.out / f"{name}.parquet").read_bytes() == (b.out / f"{name}.parquet").read_bytes(), name
    assert (a.out / "events.parquet").read_bytes() != (c.out / "events.parquet").read_bytes()


def test_chunks_give_unique_ids_and_the_same_population_size(tmp_path):
    settings = _settings(tmp_path, chunk_customers=100)
    report = generate(settings, customers=250, items=60, days=90)
    events = pd.read_parquet(report.out / "events.parquet")
    customers = pd.read_parquet(report.out / "customers.parquet")
    assert customers.customer_id.is_unique and len(customers) == 250
    assert events.event_id.is_unique
    assert events.customer_id.str.slice(1).astype(int).max() > 200  # the last chunk produced events too
    known = {"customers": set(customers.customer_id), "products": None}
    TABLES["events"].schema(known).validate(events)


def test_ground_truth_files_have_the_expected_columns(small):
    settings, report, tables = small
    truth = settings.ground_truth_dir
    expected = {
        "customers_truth": {
            "customer_id",
            "session_rate",
            "purchase_rate",
            "price_sensitivity",
            "churn_date",
            "base_hazard",
        },
        "taste": {"customer_id", "category", "weight"},
        "treatment_effects": {"customer_id", "offer_type", "log_hazard_effect", "churn_prob_effect"},
        "hazard_weekly": {"customer_id", "week_start", "hazard"},
        "complements": {"item_id", "complement_item_id"},
        "categories": {"category", "consumable", "cycle_days"},
    }
    for name, columns in expected.items():
        df = pd.read_parquet(truth / f"{name}.parquet")
        assert columns <= set(df.columns), name
        assert len(df) > 0, name
    effects = pd.read_parquet(truth / "treatment_effects.parquet")
    assert len(effects) == SMALL["customers"] * len(OFFER_TYPES)
    # Heterogeneous: each offer type helps some customers and not others; a few are slightly hurt.
    assert (effects.log_hazard_effect < -0.3).any() and (effects.log_hazard_effect > 0).any()
    hazard = pd.read_parquet(truth / "hazard_weekly.parquet")
    assert hazard.hazard.between(0, 1).all()
    taste = pd.read_parquet(truth / "taste.parquet")
    assert set(taste.category) <= set(tables["products"].category)
    assert taste.groupby("customer_id").size().median() < tables["products"].category.nunique()  # sparse


def test_churned_customers_do_nothing_after_their_churn_date(small):
    settings, _, tables = small
    truth = pd.read_parquet(settings.ground_truth_dir / "customers_truth.parquet")
    assert truth.churn_date.notna().sum() > 10 and truth.churn_date.isna().sum() > 10
    ev = tables["events"].merge(truth[["customer_id", "churn_date"]], on="customer_id")
    assert not (ev.ts >= ev.churn_date).any()
    tk = tables["tickets"].merge(truth[["customer_id", "churn_date"]], on="customer_id")
    assert not (tk.opened_at >= tk.churn_date).any()
    signup = tables["customers"].set_index("customer_id").signup_date
    first = tables["events"].groupby("customer_id").ts.min()
    assert (first >= signup.reindex(first.index)).all()


def test_customers_sign_up_over_time_and_mostly_consent(small):
    settings, _, tables = small
    start = pd.Timestamp(settings.synth.start_date)
    signup = tables["customers"].signup_date
    assert 0.2 < (signup < start).mean() < 0.5
    assert (signup > start + pd.Timedelta(days=SMALL["days"] // 2)).any()
    consent = tables["consent"]
    assert 0.75 < consent.personalization.mean() < 0.95
    assert 0.55 < consent.marketing.mean() < consent.personalization.mean()
    assert 0 < (~tables["products"].in_stock).mean() < 0.1


def test_offers_are_randomised_with_configured_costs(small):
    settings, _, tables = small
    offers = tables["offers"]
    assert offers.randomized.all()
    assert set(offers.offer_type) <= set(OFFER_TYPES)
    assert (offers.cost == offers.offer_type.map(settings.retention.offers)).all()
    assert 0 < offers.redeemed_at.notna().mean() < 1
    assert (offers.redeemed_at.dropna() > offers.sent_at[offers.redeemed_at.notna()]).all()


def test_complement_pairs_are_bought_together_more_than_chance(small):
    settings, _, tables = small
    pairs = pd.read_parquet(settings.ground_truth_dir / "complements.parquet")
    buy = tables["events"][tables["events"]["type"] == "purchase"]
    bought = buy.groupby("customer_id").item_id.agg(set)
    with_main, base = [], []
    for main, acc in pairs.itertuples(index=False):
        has_main = bought.map(lambda s, m=main: m in s)
        has_acc = bought.map(lambda s, a=acc: a in s)
        if has_main.sum() >= 3:
            with_main.append(has_acc[has_main].mean())
            base.append(has_acc[~has_main].mean())
    assert len(with_main) >= 3
    assert np.mean(with_main) > 3 * np.mean(base)


def test_consumables_are_rebought(small):
    settings, _, tables = small
    categories = pd.read_parquet(settings.ground_truth_dir / "categories.parquet")
    buy = tables["events"][tables["events"]["type"] == "purchase"].merge(
        tables["products"][["item_id", "category"]], on="item_id"
    )
    repeat = buy.groupby(["customer_id", "item_id", "category"]).size().gt(1).groupby("category").mean()
    consumable = categories.set_index("category").consumable.reindex(repeat.index)
    assert repeat[consumable].mean() > 3 * repeat[~consumable].mean()


def test_summary_reports_rows_time_and_churn_rates(small):
    settings, report, _ = small
    text = report.summary()
    assert "events" in text and f"{report.rows['events']:,}" in text
    days_before_end = settings.features.test_cutoff_days_before_end
    expected_cutoff = settings.synth.start_date + timedelta(days=SMALL["days"] - days_before_end)
    assert report.cutoff == expected_cutoff and str(expected_cutoff) in text
    assert 0 < report.label_rate < 1 and 0 < report.truth_rate < 1


def test_churn_rates_match_labels_from_events(small):
    settings, report, tables = small
    cutoff = pd.Timestamp(report.cutoff)
    labels = _labels(tables["events"], cutoff, settings)
    rates = churn_rates(settings, report.cutoff)
    assert rates["active"] == len(labels)
    assert rates["label_rate"] == pytest.approx(labels.churned.mean())
    assert rates["label_rate"] == pytest.approx(report.label_rate)
    assert rates["truth_rate"] == pytest.approx(report.truth_rate)


def test_oracle_is_calibrated_against_realised_labels(moderate):
    settings, report = moderate
    cutoff = pd.Timestamp(settings.synth.start_date) + pd.Timedelta(days=report.days - 90)
    oracle = oracle_churn_probability(settings, cutoff.date())
    events = pd.read_parquet(report.out / "events.parquet", columns=["customer_id", "ts", "type"])
    labels = _labels(events, cutoff, settings)
    assert set(oracle.customer_id[oracle.active]) == set(labels.customer_id)
    assert oracle.oracle_p[~oracle.active].isna().all()
    merged = labels.merge(oracle, on="customer_id")
    p = merged.oracle_p.astype(float)
    assert abs(p.mean() - merged.churned.mean()) < 0.03
    assert roc_auc_score(merged.churned, p) > 0.85


def test_bad_sizes_and_cutoffs_are_refused(tmp_path, small):
    with pytest.raises(ValueError, match="customers"):
        generate(_settings(tmp_path), customers=0, items=40, days=90)
    with pytest.raises(FileNotFoundError, match="synth"):
        oracle_churn_probability(_settings(tmp_path / "empty"), pd.Timestamp("2025-03-01").date())
    settings, _, _ = small
    with pytest.raises(ValueError, match="horizon"):
        oracle_churn_probability(settings, settings.synth.start_date + timedelta(days=SMALL["days"] - 10))


def test_cli_writes_the_tables(tmp_path, monkeypatch):
    from patron.cli.main import app

    monkeypatch.setenv("PATRON_HOME", str(tmp_path))
    result = CliRunner().invoke(app, ["data", "synth", "--customers", "60", "--items", "30", "--days", "70"])
    assert result.exit_code == 0, result.output
    assert "events" in result.output
    for name in INGEST_ORDER:
        assert (tmp_path / "raw" / "synthetic" / f"{name}.parquet").exists()
