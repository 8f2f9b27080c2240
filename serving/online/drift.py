"""The online purchases not yet merged into the workspace tables, as an input of `patron monitor`."""

from __future__ import annotations

import pandas as pd

from patron.config import Settings
from serving.online.backend import open_store
from serving.online.event_sync import checkpoint


def unmerged_purchase_prices(settings: Settings, batch: int = 200_000) -> pd.Series | None:
    """Unit prices of online purchase events after the ingest checkpoint (None when there is no online store)."""
    if settings.online.backend == "sqlite" and not settings.online_db.exists():
        return None
    store = open_store(settings)
    try:
        rows = [event for _, event in store.event_log(after=checkpoint(settings), limit=batch)]
    finally:
        store.close()
    prices = [e.get("unit_price") for e in rows if e.get("type") == "purchase"]
    return pd.Series(prices, dtype=float)
