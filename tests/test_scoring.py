"""Churn scoring and reasons (serving/answers/churn_scoring.py) on a small ChurnModel (booster) trained here."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from patron.config import load_settings
from serving.answers.churn_scoring import (
    EncodedFeatures,
    flatten_reasons,
    reason_text,
    score_customers,
    score_frame,
    score_population,
)
from training.churn.model import ChurnModel, categorical_columns

DESCRIPTIONS = {
    "days_since_last_purchase": "no purchase in {value:.0f} days",
    "gap_mean_days": "usually buys every {value:.0f} days",
    "orders_total": "{value:.0f} orders in total",
    "region": "lives in region {value}",
}


@pytest.fixture(scope="module")
def frame_and_booster() -> tuple[pd.DataFrame, ChurnModel]:
    rng = np.random.default_rng(0)
    n = 600
    df = pd.DataFrame(
        {
            "customer_id": [f"c{i}" for i in range(n)],
            "days_since_last_purchase": rng.uniform(0, 150, n),
            "gap_mean_days": rng.uniform(10, 40, n),
            "orders_total": rng.integers(1, 30, n).astype(float),
            "region": pd.Categorical(rng.choice(["north", "south"], n)),
        }
    )
    y = (df["days_since_last_purchase"] / df["gap_mean_days"] + rng.normal(0, 0.5, n) > 3).astype(int)
    X = df.drop(columns="customer_id")
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "seed": 0, "min_data_in_leaf": 10}, lgb.Dataset(X, y), num_boost_round=30
    )
    return df, ChurnModel(booster, None, categorical_columns(X))  # no calibrator: probabilities are the booster's


def test_scores_are_probabilities_with_tiers_and_top_positive_reasons(frame_and_booster):
    df, booster = frame_and_booster
    churn = load_settings().churn
    scored = score_frame(booster, df, churn, DESCRIPTIONS, groups=({}, {}))
    assert list(scored["customer_id"]) == list(df["customer_id"])
    assert scored["churn_probability"].between(0, 1).all()
    assert np.allclose(scored["churn_probability"], booster.predict(df[booster.feature_name()]))
    assert all(churn.tier(p) == t for p, t in zip(scored["churn_probability"], scored["risk_tier"]))
    contrib = booster.predict(df[booster.feature_name()], pred_contrib=True)
    for i, reasons in enumerate(scored["reasons"]):
        assert len(reasons) <= 3
        values = [r["contribution"] for r in reasons]
        assert values == sorted(values, reverse=True) and all(v > 0 for v in values)
        positive = sorted((c for c in contrib[i, :-1] if c > 0), reverse=True)[:3]
        assert np.allclose(values, positive)


def test_grouped_features_make_one_reason_with_the_summed_contribution(frame_and_booster):
    df, booster = frame_and_booster
    groups = (
        {"days_since_last_purchase": "recency", "gap_mean_days": "recency"},
        {"recency": "no purchase in {days_since_last_purchase:.0f} days, usually every {gap_mean_days:.0f}"},
    )
    scored = score_frame(booster, df, load_settings().churn, DESCRIPTIONS, groups=groups)
    names = booster.feature_name()
    contrib = booster.predict(df[names], pred_contrib=True)
    pair = [names.index("days_since_last_purchase"), names.index("gap_mean_days")]
    seen = 0
    for i, reasons in enumerate(scored["reasons"]):
        keys = [r["group"] for r in reasons]
        assert len(keys) == len(set(keys))  # a group appears once
        assert not {"days_since_last_purchase", "gap_mean_days"} <= {r["feature"] for r in reasons}
        values = [r["contribution"] for r in reasons]
        assert values == sorted(values, reverse=True) and all(v > 0 for v in values)
        for r in reasons:
            if r["group"] == "recency":
                seen += 1
                assert r["contribution"] == pytest.approx(contrib[i, pair].sum())
                row = df.iloc[i]
                assert r["text"] == (
                    f"no purchase in {row['days_since_last_purchase']:.0f} days, "
                    f"usually every {row['gap_mean_days']:.0f}"
                )
    assert seen > len(df) // 2  # recency drives this label: the grouped reason shows for most customers


def test_reason_text_combines_recency_with_usual_gap():
    row = pd.Series({"days_since_last_purchase": 74.2, "gap_mean_days": 21.0, "region": "north"})
    assert reason_text("days_since_last_purchase", row, DESCRIPTIONS) == "no purchase in 74 days, usually every 21"
    assert reason_text("region", row, DESCRIPTIONS) == "lives in region north"
    assert reason_text("undescribed", pd.Series({"undescribed": 2.0}), DESCRIPTIONS) == "undescribed: 2.0"
    assert reason_text("orders_total", pd.Series({"orders_total": np.nan}), DESCRIPTIONS) == "no orders total on record"
    # a customer with nothing re-bought regularly has no overdue figure: said as such, not "no ... on record"
    assert (
        reason_text("rebuy_overdue_days", pd.Series({"rebuy_overdue_days": np.nan}), DESCRIPTIONS)
        == "buys nothing that customers re-buy regularly"
    )


def test_unknown_customers_are_reported_not_scored(frame_and_booster, monkeypatch):
    df, booster = frame_and_booster
    monkeypatch.setattr("serving.answers.churn_scoring._descriptions", lambda: DESCRIPTIONS)
    out = score_customers(booster, df, ["c5", "nobody", "c5"], load_settings().churn)
    assert [o["customer_id"] for o in out] == ["c5", "nobody", "c5"]
    assert out[0]["known"] and 0 <= out[0]["churn_probability"] <= 1 and out[0] == out[2]
    assert out[1] == {
        "customer_id": "nobody",
        "churn_probability": None,
        "risk_tier": None,
        "reasons": [],
        "known": False,
    }


def test_population_scores_are_sorted_and_batching_changes_nothing(frame_and_booster, monkeypatch):
    df, booster = frame_and_booster
    monkeypatch.setattr("serving.answers.churn_scoring._descriptions", lambda: DESCRIPTIONS)
    churn = load_settings().churn
    batched = score_population(booster, df, churn, batch_size=64, progress=False)
    whole = score_population(booster, df, churn, batch_size=10_000, progress=False)
    pd.testing.assert_frame_equal(batched, whole)
    assert batched["churn_probability"].is_monotonic_decreasing
    flat = flatten_reasons(batched)
    assert "reasons" not in flat and {"reason_1", "reason_2", "reason_3"} <= set(flat.columns)
    assert flat.loc[0, "reason_1"] == batched.loc[0, "reasons"][0]["text"]


@pytest.mark.integration
def test_score_churn_command_writes_sorted_active_scores(trained_workspace, tmp_path):
    from typer.testing import CliRunner

    from features.pit.build import data_end
    from patron.cli.main import app
    from serving.answers.churn_scoring import active_customer_ids

    settings = trained_workspace.settings
    runner = CliRunner()
    out = tmp_path / "scores.csv"
    result = runner.invoke(app, ["--config", str(trained_workspace.config), "score", "churn", "--out", str(out)])
    assert result.exit_code == 0, result.output
    scores = pd.read_csv(out, dtype={"customer_id": str, "model_version": str}, keep_default_na=False)
    assert set(scores["customer_id"]) == active_customer_ids(settings, data_end(settings))
    assert scores["churn_probability"].is_monotonic_decreasing
    assert scores["churn_probability"].between(0, 1).all()
    assert all(settings.churn.tier(p) == t for p, t in zip(scores["churn_probability"], scores["risk_tier"]))
    assert (scores["reason_1"] != "").any()
    assert scores["model_version"].nunique() == 1
    assert f"{len(scores)} customers scored" in result.output

    result = runner.invoke(app, ["--config", str(trained_workspace.config), "score", "churn", "--min-tier", "medium"])
    assert result.exit_code == 0, result.output
    default = pd.read_parquet(settings.outputs_dir / "churn_scores.parquet")
    assert set(default["risk_tier"]) <= {"high", "medium"}
    assert len(default) == (scores["churn_probability"] >= settings.churn.risk_tiers["medium"]).sum()

    result = runner.invoke(app, ["--config", str(trained_workspace.config), "score", "churn", "--min-tier", "extreme"])
    assert result.exit_code != 0 and "min_tier" in result.output


def test_unknown_output_format_is_refused_naming_out(tmp_path):
    from features.tables.export import write_csv_or_parquet

    with pytest.raises(ValueError, match="out"):
        write_csv_or_parquet(pd.DataFrame({"a": [1]}), tmp_path / "scores.xlsx")
    written = write_csv_or_parquet(pd.DataFrame({"a": [1]}), tmp_path / "scores.csv")
    assert pd.read_csv(written)["a"].tolist() == [1]


def test_rows_encoded_once_score_exactly_as_the_frame_does(frame_and_booster):
    df, booster = frame_and_booster
    churn = load_settings().churn
    df = df.copy()
    # a region the model never saw and a categorical with other category order must encode as LightGBM does
    df["region"] = pd.Categorical(
        df["region"].astype(str).where(df.index % 7 != 0, "east"), categories=["south", "east", "north"]
    )
    encoded = EncodedFeatures(booster, df)
    some = df.sample(40, random_state=1)
    ids = some["customer_id"].tolist()
    plain = score_customers(booster, some, ids, churn)
    fast = score_customers(booster, some, ids, churn, encoded)
    assert fast == plain and len(plain) == 40
    assert np.array_equal(
        booster.predict(encoded.rows(some), pred_contrib=True),
        booster.predict(some[booster.feature_name()], pred_contrib=True),
    )
    other = ChurnModel(
        lgb.train(
            {"objective": "binary", "verbose": -1, "seed": 1},
            lgb.Dataset(df[booster.feature_name()], (df["orders_total"] > 15).astype(int)),
            num_boost_round=5,
        ),
        None,
        ["region"],
    )
    # rows encoded for another booster are not used for this one
    assert score_customers(other, some, ids, churn, encoded) == score_customers(other, some, ids, churn)
