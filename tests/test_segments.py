"""Segments: RFM quintile scores, lifecycle rules and CLV value tiers on a small hand-built feature frame."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.pit.segments import customer_segments, quantile_scores
from patron.config import SegmentsConfig

CFG = SegmentsConfig(
    rfm_bins=5,
    new_max_tenure_days=90,
    lapsed_after_days=180,
    at_risk_gap_ratio=2.0,
    at_risk_after_days=60,
    value_tiers={"high": 0.8, "medium": 0.5, "low": 0.0},
)


def frame() -> pd.DataFrame:
    """Ten customers; recency, frequency and spend ordered so that C09 is best on all three."""
    n = 10
    return pd.DataFrame(
        {
            "customer_id": [f"C{i:02d}" for i in range(n)],
            "days_since_last_purchase": [170.0, 150, 130, 110, 90, 10, 8, 6, 4, 2],
            "orders_total": np.arange(1, n + 1),
            "spend_total": np.arange(1, n + 1) * 10.0,
            "tenure_days": [400.0] * n,
            "gap_mean_days": [100.0, 100, 100, 100, 100, 30, 30, 30, 30, 30],
        }
    )


def test_rfm_quintiles_best_customer_scores_555() -> None:
    seg = customer_segments(frame(), None, CFG).set_index("customer_id")
    assert seg.loc["C09", "rfm_score"] == "555"
    assert seg.loc["C00", "rfm_score"] == "111"
    for col in ("rfm_recency", "rfm_frequency", "rfm_monetary"):
        assert seg[col].between(1, 5).all()
        assert seg[col].value_counts().to_dict() == {s: 2 for s in range(1, 6)}  # ten customers: two per quintile
    # Recency: fewer days since the last purchase scores higher.
    assert seg["rfm_recency"].is_monotonic_increasing


def test_quantile_scores_ties_share_a_score_and_missing_ranks_lowest() -> None:
    scores = quantile_scores(pd.Series([np.nan, 1.0, 1.0, 1.0, 5.0]), 5)
    assert scores.iloc[0] == 1
    assert scores.iloc[1] == scores.iloc[2] == scores.iloc[3]
    assert scores.iloc[4] == 5


def test_lifecycle_rules() -> None:
    f = frame().iloc[:5].copy()
    f["customer_id"] = ["new", "lapsed", "at_risk_gap", "at_risk_single", "active"]
    f["tenure_days"] = [30.0, 400, 400, 400, 400]
    f["days_since_last_purchase"] = [5.0, 200, 70, 65, 40]
    f["gap_mean_days"] = [np.nan, 20, 30, np.nan, 30]
    seg = customer_segments(f, None, CFG).set_index("customer_id")
    assert seg["lifecycle_stage"].to_dict() == {
        "new": "new",
        "lapsed": "lapsed",
        "at_risk_gap": "at_risk",
        "at_risk_single": "at_risk",
        "active": "active",
    }
    never = f.iloc[[1]].assign(customer_id="never", days_since_last_purchase=np.nan)
    assert customer_segments(never, None, CFG)["lifecycle_stage"].item() == "lapsed"


def test_a_stopped_habit_is_lapsed_inside_the_lookback() -> None:
    f = frame().iloc[:4].copy()
    f["customer_id"] = ["weekly_gone", "weekly_late", "monthly_late", "weekly_just_late"]
    f["days_since_last_purchase"] = [100.0, 50, 110, 27]
    f["gap_mean_days"] = [7.0, 7, 30, 7]
    seg = customer_segments(f, None, CFG).set_index("customer_id")["lifecycle_stage"]
    assert CFG.lapsed_gap_ratio == 4.0 and CFG.lapsed_after_days == 180
    assert seg["weekly_gone"] == "lapsed"  # 100 days >= 4 x 7 and >= at_risk_after_days (60), though < 180
    assert seg["weekly_late"] == "at_risk"  # 50 >= 4 x 7 but under the 60-day floor
    assert seg["monthly_late"] == "at_risk"  # 110 < 4 x 30
    assert seg["weekly_just_late"] == "at_risk"  # 27 < 28
    with pytest.raises(ValueError, match="lapsed_gap_ratio"):
        SegmentsConfig(at_risk_gap_ratio=3.0, lapsed_gap_ratio=2.5)


def test_value_tiers_from_clv_and_unknown() -> None:
    f = frame()
    clv = pd.Series(np.arange(10, dtype=float)[::-1], index=f["customer_id"][::-1].to_numpy())  # C09 highest
    seg = customer_segments(f, clv.drop("C05"), CFG).set_index("customer_id")
    assert seg.loc[["C08", "C09"], "value_tier"].eq("high").all()
    assert seg.loc["C05", "value_tier"] == "unknown"
    assert seg.loc["C00", "value_tier"] == "low"
    assert seg["value_tier"].value_counts()["medium"] >= 2
    assert customer_segments(f, None, CFG)["value_tier"].eq("unknown").all()


def test_missing_feature_is_named() -> None:
    with pytest.raises(ValueError, match="orders_total"):
        customer_segments(frame().drop(columns="orders_total"), None, CFG)


def test_config_needs_a_zero_tier() -> None:
    with pytest.raises(ValueError, match="value_tiers"):
        SegmentsConfig(value_tiers={"high": 0.8})
