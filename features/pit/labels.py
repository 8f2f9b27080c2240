"""Churn labels at a cutoff t.

A customer is *active* at t when they made at least one `purchase` in [t - lookback_days, t). An active customer
is labelled `churned` = 1 when they make no `purchase` in [t, t + horizon_days), else 0; customers who are not
active get no label (NA). lookback_days and horizon_days come from settings.features. The customers labelled are
those known before t (as in the customer features); apart from that customer list, only purchases in
[t - lookback_days, t + horizon_days) are read.
"""

from __future__ import annotations

import pandas as pd

from features.tables.warehouse import Warehouse

_LABELS_SQL = """
WITH base AS ({base}),
window_purchases AS (
    SELECT customer_id,
           bool_or(ts < $cutoff) AS active,
           bool_or(ts >= $cutoff) AS purchased_after
    FROM events
    WHERE type = 'purchase' AND ts >= $cutoff - INTERVAL (CAST($lookback AS INTEGER)) DAY
          AND ts < $cutoff + INTERVAL (CAST($horizon AS INTEGER)) DAY
    GROUP BY customer_id
)
SELECT base.customer_id,
       coalesce(w.active, false) AS active,
       CASE WHEN coalesce(w.active, false) THEN CAST(NOT coalesce(w.purchased_after, false) AS INTEGER) END
           AS churned
FROM base LEFT JOIN window_purchases w USING (customer_id)
ORDER BY base.customer_id
"""


def compute_churn_labels(wh: Warehouse, cutoff: pd.Timestamp, lookback_days: int, horizon_days: int) -> pd.DataFrame:
    """DataFrame[customer_id, active (bool), churned (Int64 0/1, NA when not active)] at the cutoff."""
    base = "SELECT DISTINCT customer_id FROM events WHERE ts < $cutoff"
    if wh.has("customers"):
        base += " UNION SELECT customer_id FROM customers WHERE signup_date < $cutoff"
    df = wh.df(
        _LABELS_SQL.format(base=base), {"cutoff": cutoff, "lookback": int(lookback_days), "horizon": int(horizon_days)}
    )
    df["customer_id"] = df["customer_id"].astype(str)
    df["active"] = df["active"].astype(bool)
    df["churned"] = df["churned"].astype("Int64")
    return df
