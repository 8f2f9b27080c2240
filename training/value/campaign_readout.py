"""A campaign's readout: treatment vs holdout per group (all, offer, segment, segment x offer), score and seeded
bootstrap intervals, realised against expected net value, and a plain verdict.

Outcomes per customer over the window after the send day: retained (a purchase: the opposite of the churn label),
repurchased (purchases on two or more days), revenue, redeemed (the offer; the holdout has none). The rates' effects
get Newcombe's hybrid score interval (no resampling; sound at rates near 0 or 1, where a bootstrap of few customers
collapses to zero width); revenue and net value get percentile intervals of `bootstrap` seeded resamples of each
arm. Realised net value of a group = n_treated x (mean CLV x retained among the treated - the same among the held
out) - the treated offers' cost: the plan's own CLV x tau - cost, with the effect measured instead of predicted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import binomtest

from features.tables.campaigns import HOLDOUT, TREATMENT

OUTCOME_COLUMNS = ["retained", "repurchased", "revenue", "redeemed"]


@dataclass(frozen=True)
class ReadoutSettings:
    """How sure, how many resamples, how few customers is too few, and the seed."""

    confidence: float
    bootstrap: int
    min_arm_customers: int
    seed: int


def outcomes_from(assignment: pd.DataFrame, purchases: pd.DataFrame, redeemed: set[str]) -> pd.DataFrame:
    """The assignment with OUTCOME_COLUMNS from purchases in the window (customer_id, ts, value) and the ids of
    customers who redeemed their offer."""
    ids = assignment["customer_id"].astype(str)
    bought = purchases.assign(customer_id=purchases["customer_id"].astype(str), day=purchases["ts"].dt.normalize())
    per = bought.groupby("customer_id").agg(days=("day", "nunique"), revenue=("value", "sum"))
    days = ids.map(per["days"]).fillna(0).to_numpy()
    return assignment.assign(
        retained=(days >= 1).astype(int),
        repurchased=(days >= 2).astype(int),
        revenue=ids.map(per["revenue"]).fillna(0.0).to_numpy(float),
        redeemed=(ids.isin(redeemed) & (assignment["arm"] == TREATMENT)).astype(int).to_numpy(),
    )


def _interval(draws: np.ndarray, confidence: float) -> list[float]:
    tail = (1 - confidence) / 2 * 100
    return [float(np.percentile(draws, tail)), float(np.percentile(draws, 100 - tail))]


def newcombe_interval(treated: np.ndarray, held: np.ndarray, confidence: float) -> list[float]:
    """Newcombe's hybrid score interval for a difference of two proportions (from scipy's Wilson intervals): no
    degenerate zero-width interval when a rate is 0 or 1, as a bootstrap of few customers gives."""
    parts = []
    for values in (treated, held):
        k, n = int(values.sum()), len(values)
        ci = binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
        parts.append((k / n, ci.low, ci.high))
    (p1, l1, u1), (p2, l2, u2) = parts
    d = p1 - p2
    return [d - float(np.hypot(p1 - l1, u2 - p2)), d + float(np.hypot(u1 - p1, p2 - l2))]


def _mean_draws(values: np.ndarray, rng: np.random.Generator, b: int) -> np.ndarray:
    if len(values) == 0:
        return np.full(b, np.nan)
    if set(np.unique(values)) <= {0, 1}:
        return rng.binomial(len(values), values.mean(), b) / len(values)
    return values[rng.integers(0, len(values), (b, len(values)))].mean(axis=1)


def _signed(x: float, digits: int = 1) -> str:
    return f"{x:+,.{digits}f}"


def group_readout(frame: pd.DataFrame, title: str, cfg: ReadoutSettings, stream: int) -> dict[str, Any]:
    """Treatment vs holdout of one group of customers (OUTCOME_COLUMNS, arm, clv, cost, expected_net_value)."""
    t, h = frame[frame["arm"] == TREATMENT], frame[frame["arm"] == HOLDOUT]
    rng = np.random.default_rng([cfg.seed, stream])
    b = cfg.bootstrap
    out: dict[str, Any] = {"group": title, "treatment": len(t), "holdout": len(h)}
    for col in ("retained", "repurchased", "revenue"):
        tv, hv = t[col].to_numpy(float), h[col].to_numpy(float)
        both = bool(len(tv) and len(hv))
        if col == "revenue":
            diff = _mean_draws(tv, rng, b) - _mean_draws(hv, rng, b)
            ci = _interval(diff, cfg.confidence) if both else None
        else:  # rates in percentage points
            ci = [100 * x for x in newcombe_interval(tv, hv, cfg.confidence)] if both else None
        scale = 1.0 if col == "revenue" else 100.0
        out[col] = {
            "treatment": float(tv.mean()) if len(tv) else None,
            "holdout": float(hv.mean()) if len(hv) else None,
            "effect": float(tv.mean() - hv.mean()) * scale if both else None,
            "ci": ci,
        }
    out["redemption_rate"] = float(t["redeemed"].mean()) if len(t) else None
    spend = float(t["cost"].sum())
    out["spend"] = spend
    out["expected_net_value"] = float(t["expected_net_value"].sum())
    if len(t) and len(h):
        tv, hv = (t["clv"] * t["retained"]).to_numpy(float), (h["clv"] * h["retained"]).to_numpy(float)
        net = len(t) * (_mean_draws(tv, rng, b) - _mean_draws(hv, rng, b)) - spend
        out["realised_net_value"] = float(len(t) * (tv.mean() - hv.mean()) - spend)
        out["realised_net_value_ci"] = _interval(net, cfg.confidence)
    else:
        out["realised_net_value"], out["realised_net_value_ci"] = None, None
    out["verdict"] = verdict(out, cfg)
    return out


def verdict(group: dict[str, Any], cfg: ReadoutSettings) -> str:
    """One plain sentence: the effect on retention with its interval and the net value, or why there is none."""
    n_t, n_h = group["treatment"], group["holdout"]
    if min(n_t, n_h) < cfg.min_arm_customers:
        return (
            f"{group['group']}: too few customers for a verdict ({n_t} treated, {n_h} held out; at least "
            f"{cfg.min_arm_customers} in each arm needed)"
        )
    r = group["retained"]
    low, high = r["ci"]
    finding = "kept customers" if low > 0 else "lost customers" if high < 0 else "no clear effect"
    return (
        f"{group['group']}: {_signed(r['effect'])} pts retention, {cfg.confidence:.0%} CI [{_signed(low)}, "
        f"{_signed(high)}], net {_signed(group['realised_net_value'], 0)} (expected "
        f"{_signed(group['expected_net_value'], 0)}): {finding}"
    )


def readout(frame: pd.DataFrame, cfg: ReadoutSettings) -> dict[str, Any]:
    """The whole campaign, each offer type, each segment and each segment x offer."""
    groups: dict[str, list[dict[str, Any]]] = {"overall": [group_readout(frame, "all offers", cfg, 0)]}
    stream = 1
    for key, by in (
        ("by_offer", ["offer_type"]),
        ("by_segment", ["segment"]),
        ("by_segment_offer", ["segment", "offer_type"]),
    ):
        groups[key] = []
        for name, part in frame.groupby(by, sort=True):
            name = name if isinstance(name, tuple) else (name,)
            title = (
                f"{name[1]} to {name[0]}"
                if len(by) == 2
                else (f"{name[0]} (all segments)" if by == ["offer_type"] else f"all offers to {name[0]}")
            )
            groups[key].append({**dict(zip(by, name, strict=True)), **group_readout(part, title, cfg, stream)})
            stream += 1
    return groups
