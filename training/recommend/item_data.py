"""What recommenders read of the tables besides interactions: events as customer/item codes, and per item its
category, mean price and launch time."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from features.tables.store import read_table
from training.recommend.item_timeline import seconds_of
from training.recommend.ranker_features import ItemInfo

PRODUCT_COLUMNS = ("item_id", "category", "launched_at")  # what the ranker reads of the catalogue


def read_products(tables: Path) -> pd.DataFrame | None:
    """The catalogue's PRODUCT_COLUMNS that the retailer provided (None without a products table)."""
    products = read_table(Path(tables), "products")
    return None if products is None else products[[c for c in PRODUCT_COLUMNS if c in products.columns]]


def event_codes(
    tables: Path,
    types: Sequence[str],
    customers: Sequence[str],
    items: Sequence[str],
    before: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Events of the given types (dated before `before`) as codes [u, i, ts]: positions in `customers`, `items`."""
    events = read_table(Path(tables), "events", columns=["customer_id", "item_id", "ts", "type"])
    chosen = events[events["type"].isin(list(types)) & ((events["ts"] < before) if before is not None else True)]
    frame = pd.DataFrame(
        {
            "u": pd.Index(customers).get_indexer(chosen["customer_id"].astype(str)),
            "i": pd.Index(items).get_indexer(chosen["item_id"].astype(str)),
            "ts": chosen["ts"].to_numpy(),
        }
    )
    return frame[(frame["u"] >= 0) & (frame["i"] >= 0)].reset_index(drop=True)


def item_info(item_ids: Sequence[str], events: pd.DataFrame, products: pd.DataFrame | None) -> ItemInfo:
    """Category code, mean unit price and launch time per item code (the position in `item_ids`)."""
    info = ItemInfo.empty(len(item_ids))
    index = pd.Index(item_ids)
    if products is not None:
        catalogue = (
            products.assign(item_id=products["item_id"].astype(str)).drop_duplicates("item_id").set_index("item_id")
        )
        if "category" in catalogue:
            info.category = pd.Categorical(catalogue["category"].astype(str).reindex(index)).codes.astype(np.int64)
        if "launched_at" in catalogue:
            launched = pd.to_datetime(catalogue["launched_at"]).reindex(index)
            info.launched = np.where(launched.notna(), seconds_of(launched.fillna(pd.Timestamp(0))), np.nan)
    price = events.astype({"item_id": str}).groupby("item_id")["unit_price"].mean().reindex(index)
    info.price = price.to_numpy(np.float64)
    return info
