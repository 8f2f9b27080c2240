"""The dashboard's customer lists: those worth saving first (the best offer's expected net value), the likely lost
apart; riskiest first when the plan's inputs (CLV and uplift models) are missing."""

from __future__ import annotations

import pandas as pd

from patron.config import Settings
from serving.answers.priority import worth_saving_first
from serving.answers.retention_plan import CustomerValue


def listed_customers(
    settings: Settings,
    scored: pd.DataFrame,
    features: pd.DataFrame,
    segments: pd.DataFrame,
    value: CustomerValue | None,
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """(main table, likely lost), each at most dashboard.top rows, from `scored` (riskiest first, with reasons).

    Rows carry lifecycle_stage, rfm_score, value_tier, clv, best_offer, priority and preferred_channel; `segments`
    is indexed by customer_id, `features` holds the scored customers' feature rows.
    """
    top = settings.dashboard.top
    ids = scored["customer_id"].astype(str)
    extras = (
        value.customer_extras(ids.tolist(), settings.retention.offers)
        if value is not None
        else [{} for _ in range(len(scored))]
    )
    seg = segments.reindex(ids)
    channel = (
        features.assign(customer_id=features["customer_id"].astype(str))
        .drop_duplicates("customer_id")
        .set_index("customer_id")
        .get("preferred_channel", pd.Series(dtype=object))
        .reindex(ids)
        .astype(object)
    )
    rows = scored.assign(
        customer_id=ids.to_numpy(),
        lifecycle_stage=seg["lifecycle_stage"].to_numpy(),
        rfm_score=seg["rfm_score"].to_numpy(),
        value_tier=seg["value_tier"].to_numpy(),
        clv=[e.get("clv") for e in extras],
        best_offer=[e.get("best_offer") for e in extras],
        priority=[e.get("priority") for e in extras],
        preferred_channel=[None if pd.isna(c) else str(c) for c in channel],
    )
    if value is None:
        return rows.head(top).reset_index(drop=True), None
    act, lost = worth_saving_first(rows)
    return act.head(top), lost.head(top)
