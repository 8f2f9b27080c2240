"""Customer segments from point-in-time features: RFM quintile scores, lifecycle stage and CLV value tier.

Lifecycle stages, checked in this order (thresholds in `segments` of the config):
- new: signed up (or, without signup dates, first bought) less than `new_max_tenure_days` ago;
- lapsed: no purchase for at least `lapsed_after_days` days, or no purchase ever, or, with a usual gap between
  purchase days, no purchase for at least `lapsed_gap_ratio` times that gap and at least `at_risk_after_days` days
  (a customer whose weekly habit stopped three months ago is gone, though still inside the churn lookback);
- at_risk: days since the last purchase at least `at_risk_gap_ratio` times the customer's usual gap between purchase
  days, or, with a single purchase day (no usual gap), at least `at_risk_after_days` days;
- active: everyone else.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from patron.config import SegmentsConfig

LIFECYCLE_STAGES = ("new", "active", "at_risk", "lapsed")
UNKNOWN_TIER = "unknown"
COLUMNS = ["customer_id", "rfm_recency", "rfm_frequency", "rfm_monetary", "rfm_score", "lifecycle_stage", "value_tier"]
_REQUIRED = ("customer_id", "days_since_last_purchase", "orders_total", "spend_total")


def quantile_scores(values: pd.Series, bins: int) -> pd.Series:
    """Scores 1..bins by percentile rank (ties share a score), the highest values scoring `bins`; NaN ranks lowest."""
    pct = values.astype(float).fillna(-np.inf).rank(method="average", pct=True)
    return np.ceil(pct * bins).clip(1, bins).astype("int64")


def lifecycle_stages(features: pd.DataFrame, cfg: SegmentsConfig) -> pd.Series:
    """new / lapsed / at_risk / active per customer (rules in the module docstring)."""
    since = features["days_since_last_purchase"].astype(float)
    tenure_col = "tenure_days" if "tenure_days" in features else "days_since_first_purchase"
    tenure = features[tenure_col].astype(float) if tenure_col in features else pd.Series(np.nan, features.index)
    gap = features["gap_mean_days"].astype(float) if "gap_mean_days" in features else pd.Series(np.nan, features.index)
    has_gap = gap.notna() & (gap > 0)
    at_risk = np.where(has_gap, since >= cfg.at_risk_gap_ratio * gap, since >= cfg.at_risk_after_days)
    gone = has_gap & (since >= cfg.lapsed_gap_ratio * gap) & (since >= cfg.at_risk_after_days)
    stage = np.select(
        [
            tenure.lt(cfg.new_max_tenure_days).to_numpy(),
            (since.isna() | (since >= cfg.lapsed_after_days) | gone).to_numpy(),
            at_risk,
        ],
        ["new", "lapsed", "at_risk"],
        default="active",
    )
    return pd.Series(stage, index=features.index, name="lifecycle_stage")


def value_tiers(clv: pd.Series, tiers: dict[str, float]) -> pd.Series:
    """The tier with the highest lower bound not above each customer's CLV percentile; NaN CLV is unknown."""
    pct = clv.astype(float).rank(method="average", pct=True)
    out = pd.Series(UNKNOWN_TIER, index=clv.index, dtype=object)
    for name, bound in sorted(tiers.items(), key=lambda kv: kv[1]):  # higher tiers overwrite lower ones
        out[pct.notna() & ((pct > bound) | (bound == 0.0))] = name
    return out


def customer_segments(features: pd.DataFrame, clv: pd.Series | None, cfg: SegmentsConfig) -> pd.DataFrame:
    """customer_id, RFM quintile scores (5 best) and rfm_score, lifecycle_stage and value_tier per customer.

    `features` is a point-in-time frame from features.pit.build.customer_features; `clv` is indexed by customer_id
    (customers missing from it, or all when it is None, get value tier "unknown").
    """
    missing = [c for c in _REQUIRED if c not in features]
    if missing:
        raise ValueError(f"features: missing column(s) {missing}")
    ids = features["customer_id"].astype(str)
    recency = quantile_scores(-features["days_since_last_purchase"].astype(float), cfg.rfm_bins)
    frequency = quantile_scores(features["orders_total"], cfg.rfm_bins)
    monetary = quantile_scores(features["spend_total"], cfg.rfm_bins)
    out = pd.DataFrame(
        {
            "customer_id": ids.to_numpy(),
            "rfm_recency": recency.to_numpy(),
            "rfm_frequency": frequency.to_numpy(),
            "rfm_monetary": monetary.to_numpy(),
        }
    )
    out["rfm_score"] = (
        out["rfm_recency"].astype(str) + out["rfm_frequency"].astype(str) + out["rfm_monetary"].astype(str)
    )
    out["lifecycle_stage"] = lifecycle_stages(features, cfg).to_numpy()
    if clv is None:
        out["value_tier"] = UNKNOWN_TIER
    else:
        clv = pd.Series(clv.to_numpy(dtype=float), index=clv.index.astype(str)).reindex(ids)
        out["value_tier"] = value_tiers(clv.reset_index(drop=True), cfg.value_tiers).to_numpy()
    return out[COLUMNS]
