"""The customer x item interaction matrix for recommenders: weighted, time-decayed events before a cutoff.

Each event in [start, cutoff) contributes event_weights[type] * 0.5 ** (age_days / half_life_days), where age_days
is counted back from the cutoff; a pair's weight is the sum over its events, and pairs whose weight is
<= min_weight are dropped (so returns can cancel purchases out).
"""

from __future__ import annotations

import pandas as pd

from features.tables.warehouse import Warehouse
from patron.config import InteractionConfig

_INTERACTIONS_SQL = """
WITH weights(type, w) AS (VALUES {weights}),
weighted AS (
    SELECT e.customer_id, e.item_id,
           weights.w * pow(0.5, (epoch($cutoff) - epoch(e.ts)) / 86400.0 / $half_life) AS weight
    FROM events e JOIN weights USING (type)
    WHERE e.ts < $cutoff {start_filter}
)
SELECT customer_id, item_id, sum(weight) AS weight
FROM weighted GROUP BY customer_id, item_id
HAVING sum(weight) > $min_weight
ORDER BY customer_id, item_id
"""


def compute_interactions(
    wh: Warehouse, cutoff: pd.Timestamp, config: InteractionConfig, start: pd.Timestamp | None = None
) -> pd.DataFrame:
    """DataFrame[customer_id, item_id, weight] from events in [start, cutoff)."""
    if not config.event_weights:
        raise ValueError("features.interactions.event_weights: no event type has a weight")
    weights = ", ".join(f"('{kind}', CAST({float(w)!r} AS DOUBLE))" for kind, w in config.event_weights.items())
    params = {"cutoff": cutoff, "half_life": float(config.half_life_days), "min_weight": float(config.min_weight)}
    start_filter = ""
    if start is not None:
        start_filter = "AND e.ts >= $start"
        params["start"] = start
    df = wh.df(_INTERACTIONS_SQL.format(weights=weights, start_filter=start_filter), params)
    df["customer_id"] = df["customer_id"].astype(str)
    df["item_id"] = df["item_id"].astype(str)
    df["weight"] = df["weight"].astype("float64")
    return df
