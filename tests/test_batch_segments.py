"""`patron score churn` output carries each customer's segments: RFM scores, lifecycle stage and value tier."""

from __future__ import annotations

import pandas as pd
import pytest

from features.pit.segments import LIFECYCLE_STAGES, UNKNOWN_TIER, customer_segments


@pytest.mark.integration
def test_batch_scores_carry_segments_and_value_tiers_from_the_clv_model(trained_workspace, tmp_path) -> None:
    from features.pit.build import customer_features, data_end
    from serving.answers.retention_plan import clv_horizon_days, predict_clv
    from serving.batch.churn import score_churn
    from serving.champions.load import load_clv_champion
    from training.value.clv import train_clv

    settings = trained_workspace.settings
    settings = settings.model_copy(
        update={"clv": settings.clv.model_copy(update={"horizon_days": 120, "num_boost_round": 150, "folds": 3})}
    )
    train_clv(settings)  # a CLV model is registered: value tiers come from its predictions
    report = score_churn(settings, out=tmp_path / "scores.parquet", progress=False)
    scores = pd.read_parquet(report.path)
    assert scores["churn_probability"].is_monotonic_decreasing  # segments joined without reordering
    assert set(scores["lifecycle_stage"]) <= set(LIFECYCLE_STAGES)
    assert set(scores["value_tier"]) <= set(settings.segments.value_tiers)  # every active customer has a CLV
    assert scores["rfm_score"].str.fullmatch(r"[1-5]{3}").all()

    cutoff = data_end(settings)
    features = customer_features(settings, cutoff)
    features = features[features["customer_id"].astype(str).isin(set(scores["customer_id"].astype(str)))]
    booster, version = load_clv_champion(settings)
    clv = predict_clv(settings, booster, features, cutoff, clv_horizon_days(settings, version))
    expected = customer_segments(features, clv, settings.segments).set_index("customer_id")
    got = scores.assign(customer_id=scores["customer_id"].astype(str)).set_index("customer_id")
    for column in ("rfm_score", "lifecycle_stage", "value_tier"):
        assert got[column].to_dict() == expected[column].reindex(got.index).to_dict()
    top = expected.loc[clv.idxmax(), "value_tier"]
    assert top == max(settings.segments.value_tiers, key=settings.segments.value_tiers.get) != UNKNOWN_TIER


def test_without_a_clv_model_segments_have_an_unknown_value_tier(monkeypatch) -> None:
    from patron.config import load_settings
    from serving.batch import churn as batch_scoring
    from serving.champions import load as champions

    def no_model(settings):
        raise LookupError("no patron-clv model registered: run `patron train clv`")

    monkeypatch.setattr(champions, "load_clv_champion", no_model)
    features = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c"],
            "days_since_last_purchase": [5.0, 50.0, 400.0],
            "orders_total": [9, 3, 1],
            "spend_total": [300.0, 80.0, 10.0],
            "tenure_days": [500.0, 500.0, 500.0],
            "gap_mean_days": [20.0, 60.0, None],
        }
    )
    segments = batch_scoring.churn_segments(load_settings(), features, pd.Timestamp("2026-01-01")).set_index(
        "customer_id"
    )
    assert (segments["value_tier"] == UNKNOWN_TIER).all()
    assert segments.loc["a", "rfm_score"] == "555"
    assert segments.loc["c", "rfm_score"] == "222"  # the lowest of three ranks 1/3: bin 2 of 5
    assert segments.loc["c", "lifecycle_stage"] == "lapsed"
