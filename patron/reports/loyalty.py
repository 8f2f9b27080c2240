"""Loyalty-programme figures: participation, repurchase, points redemption, purchase frequency and basket value.

Definitions (one order: an order_id, or a customer's purchases of one day when order ids are missing):
- participation: share of customers with at least one loyalty-ledger row (that month: with ledger activity);
- repurchase rate: share of buyers with orders on at least two days (that month: share of the month's buyers who
  had ordered before);
- points redemption rate: points spent (negative ledger rows: redeemed or expired) over points earned;
- purchase frequency: orders per buyer per 30 days of the data (that month: orders per buyer);
- basket value: mean order value (quantity x unit price).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from patron.config import Settings

NON_MEMBER = "non-member"


def orders(settings: Settings) -> pd.DataFrame:
    """One row per order: customer_id, order, day, month, value."""
    from features.tables.store import read_table

    ev = read_table(
        settings.tables_dir, "events", columns=["customer_id", "ts", "type", "quantity", "unit_price", "order_id"]
    )
    ev = ev[ev["type"] == "purchase"].assign(customer_id=lambda d: d["customer_id"].astype(str))
    day = ev["ts"].dt.floor("D")
    key = ev["order_id"].astype("string").fillna(ev["customer_id"] + "@" + day.astype(str))
    ev = ev.assign(order=key, day=day, value=ev["quantity"].astype(float) * ev["unit_price"].astype(float))
    out = ev.groupby(["customer_id", "order"], as_index=False).agg(day=("day", "min"), value=("value", "sum"))
    return out.assign(month=out["day"].dt.to_period("M"))


def ledger(settings: Settings) -> pd.DataFrame:
    """The loyalty ledger (customer_id, ts, points_delta, tier_after, month); empty when the retailer has none."""
    from features.tables.store import read_table

    led = read_table(settings.tables_dir, "loyalty")
    if led is None:
        return pd.DataFrame(
            {
                "customer_id": pd.Series(dtype=str),
                "ts": pd.Series(dtype="datetime64[ns]"),
                "points_delta": pd.Series(dtype=float),
                "tier_after": pd.Series(dtype=str),
                "month": pd.Series(dtype="period[M]"),
            }
        )
    led = led.assign(customer_id=led["customer_id"].astype(str), points_delta=led["points_delta"].astype(float))
    return led.assign(month=led["ts"].dt.to_period("M"))


def _rates(customers: pd.Index, o: pd.DataFrame, led: pd.DataFrame, months: float) -> dict[str, float]:
    mine_o = o[o["customer_id"].isin(customers)]
    mine_l = led[led["customer_id"].isin(customers)]
    buyers = mine_o["customer_id"].nunique()
    days = mine_o.groupby("customer_id")["day"].nunique()
    earned = mine_l.loc[mine_l["points_delta"] > 0, "points_delta"].sum()
    return {
        "customers": len(customers),
        "participation": mine_l["customer_id"].nunique() / max(len(customers), 1),
        "repurchase_rate": float((days >= 2).mean()) if buyers else np.nan,
        "points_redemption_rate": abs(mine_l.loc[mine_l["points_delta"] < 0, "points_delta"].sum()) / earned
        if earned > 0
        else np.nan,
        "purchase_frequency_per_30d": len(mine_o) / buyers / months if buyers else np.nan,
        "basket_value": float(mine_o["value"].mean()) if len(mine_o) else np.nan,
    }


def loyalty_by_segment(settings: Settings) -> pd.DataFrame:
    """The programme's figures per lifecycle stage (at the end of the data) and per current loyalty tier."""
    from features.pit.build import customer_features, data_end
    from features.pit.segments import customer_segments

    o, led = orders(settings), ledger(settings)
    end = data_end(settings)
    seg = customer_segments(customer_features(settings, end), None, settings.segments).set_index("customer_id")
    tier = led.sort_values("ts").groupby("customer_id")["tier_after"].last().reindex(seg.index).fillna(NON_MEMBER)
    months = max((end - o["day"].min()).days / 30.0, 1.0) if len(o) else 1.0
    rows = [{"segment": "all", **_rates(seg.index, o, led, months)}]
    for column, labels in (("lifecycle_stage", seg["lifecycle_stage"]), ("loyalty_tier", tier)):
        rows += [
            {"segment": f"{column}={value}", **_rates(ids.index, o, led, months)}
            for value, ids in labels.groupby(labels)
        ]
    return pd.DataFrame(rows)


def loyalty_by_month(settings: Settings) -> pd.DataFrame:
    """The programme's figures month by month (the first and last, possibly partial, months included)."""
    o, led = orders(settings), ledger(settings)
    first = o.groupby("customer_id")["month"].min()
    rows = []
    for month, mo in o.groupby("month"):
        ml = led[led["month"] == month]
        buyers = mo["customer_id"].unique()
        earned = ml.loc[ml["points_delta"] > 0, "points_delta"].sum()
        rows.append(
            {
                "month": str(month),
                "buyers": len(buyers),
                "participation": float(np.isin(buyers, ml["customer_id"].unique()).mean()),
                "repurchase_rate": float((first.reindex(buyers) < month).mean()),
                "points_redemption_rate": (
                    abs(ml.loc[ml["points_delta"] < 0, "points_delta"].sum()) / earned if earned > 0 else np.nan
                ),
                "purchase_frequency": len(mo) / len(buyers),
                "basket_value": float(mo["value"].mean()),
            }
        )
    return pd.DataFrame(rows)
