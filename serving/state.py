"""Online state the service reads per request: catalogue, purchases, consent and current churn features."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import pandas as pd

from features.consent import consent_refusals
from features.store import read_table
from patron.config import Settings
from serving.online_store import Event, OnlineStore


@dataclass
class OnlineState:
    """In-memory snapshot of the workspace tables, behind methods so a shared online store can replace it."""

    in_stock: frozenset[str]
    category_of: dict[str, str]
    name_of: dict[str, str]
    purchased: dict[str, list[str]]
    refused_personalization: frozenset[str]
    features: pd.DataFrame = field(repr=False)
    store: OnlineStore | None = field(default=None, repr=False)
    _stock_cache: tuple[dict[str, bool], frozenset[str]] | None = field(default=None, repr=False)
    _stock_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_workspace(cls, settings: Settings, features: pd.DataFrame,
                       store: OnlineStore | None = None) -> "OnlineState":
        """Load the snapshot from the workspace tables and a customer-features frame; live data from `store`."""
        products = read_table(settings.tables_dir, "products")
        if products is None:
            raise FileNotFoundError(f"{settings.tables_dir / 'products.parquet'} is missing: ingest data first")
        events = read_table(settings.tables_dir, "events", columns=["customer_id", "item_id", "ts", "type"])
        purchases = events[events["type"] == "purchase"].sort_values("ts", ascending=False)
        # Most recent purchase first, one entry per item, so reasons can name the latest relevant purchase.
        purchases = purchases.drop_duplicates(["customer_id", "item_id"])
        refused = consent_refusals(settings, "personalization")
        return cls(
            in_stock=frozenset(products.loc[products["in_stock"].astype(bool), "item_id"]),
            category_of=dict(zip(products["item_id"], products["category"].astype(str))),
            name_of=dict(zip(products["item_id"], products["name"].astype(str))),
            purchased=purchases.groupby("customer_id", sort=False)["item_id"].agg(list).to_dict(),
            refused_personalization=refused,
            features=features.set_index("customer_id", drop=False),
            store=store,
        )

    def current_in_stock(self) -> frozenset[str]:
        """In-stock items now: the snapshot with the online store's stock overrides applied."""
        if self.store is None:
            return self.in_stock
        overrides = self.store.stock_overrides()
        cached = self._stock_cache
        if cached is not None and cached[0] == overrides:
            return cached[1]
        on = {i for i, flag in overrides.items() if flag}
        live = (self.in_stock | on) - (overrides.keys() - on)
        with self._stock_lock:
            self._stock_cache = (overrides, frozenset(live))
        return frozenset(live)

    def allowed_items(self, categories: list[str] | None = None) -> set[str]:
        """In-stock items, restricted to the given categories when any are given."""
        in_stock = self.current_in_stock()
        if categories is None:
            return set(in_stock)
        wanted = set(categories)
        return {i for i in in_stock if self.category_of.get(i) in wanted}

    def purchased_items(self, customer_id: str) -> list[str]:
        """Items the customer bought (live purchases first), most recent first, each once."""
        snapshot = self.purchased.get(customer_id, [])
        if self.store is None:
            return snapshot
        return list(dict.fromkeys(self.store.purchased_items(customer_id) + snapshot))

    def live_events(self, customer_id: str, n: int) -> list[Event]:
        """The customer's latest n events recorded through the online store, most recent first."""
        return [] if self.store is None else self.store.recent_events(customer_id, n)

    def personalization_allowed(self, customer_id: str) -> bool:
        """False when the customer refused personalisation."""
        return customer_id not in self.refused_personalization

    def customer_features(self, customer_ids: list[str]) -> pd.DataFrame:
        """Current feature rows of the known customers among `customer_ids` (order kept, unknown ones dropped)."""
        known = [c for c in customer_ids if c in self.features.index]
        return self.features.loc[known].reset_index(drop=True)
