"""Purchase lines with their value, and each customer's sequence of purchase days before a cutoff (CLV features)."""

from __future__ import annotations

import pandas as pd

from features.tables.store import read_table
from patron.config import Settings


def purchases(settings: Settings) -> pd.DataFrame:
    """Purchase lines: customer_id, ts, value (quantity x unit price)."""
    ev = read_table(settings.tables_dir, "events", columns=["customer_id", "ts", "type", "quantity", "unit_price"])
    ev = ev[ev["type"] == "purchase"]
    value = (ev["quantity"].astype(float) * ev["unit_price"].astype(float)).fillna(0.0)
    return pd.DataFrame({"customer_id": ev["customer_id"].astype(str), "ts": ev["ts"], "value": value})


def sequence_features(lines: pd.DataFrame, cutoff: pd.Timestamp) -> pd.DataFrame:
    """Per customer, from purchase days before the cutoff: purchase days, last gap, first and largest day's spend."""
    before = lines[lines["ts"] < cutoff].assign(day=lambda d: d["ts"].dt.normalize())
    days = before.groupby(["customer_id", "day"], as_index=False)["value"].sum().sort_values(["customer_id", "day"])
    g = days.groupby("customer_id")
    since = (cutoff - days["day"]).dt.days
    last_two = days.assign(since=since, k=g.cumcount(ascending=False))
    second = last_two[last_two["k"] == 1].set_index("customer_id")["since"]
    last = last_two[last_two["k"] == 0].set_index("customer_id")["since"]
    out = pd.DataFrame(
        {
            "purchase_days": g.size(),
            "first_day_spend": g["value"].first(),
            "max_day_spend": g["value"].max(),
            "days_since_second_last_purchase": second,
        }
    )
    out["last_gap_days"] = out["days_since_second_last_purchase"] - last.reindex(out.index)
    for w in (60, 120):
        out[f"purchase_days_{w}d"] = days[since < w].groupby("customer_id").size().reindex(out.index).fillna(0)
    out.index = out.index.astype(str)
    return out
