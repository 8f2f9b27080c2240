"""Online state the service reads per request: catalogue, purchases, consent and current churn features."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import pandas as pd

from features.privacy.consent import consent_refusals
from features.tables.store import read_table
from features.tables.warehouse import Warehouse
from patron.config import OnlineConfig, Settings
from serving.online.store import Event, OnlineStore


def latest_purchases(settings: Settings) -> dict[str, list[str]]:
    """Each customer's purchased items, most recent purchase first, each once (equal times: by item id)."""
    # Aggregated in DuckDB: the events table is read in pieces, not whole into pandas (~1.9 GB at 19 M events).
    bought = (
        Warehouse(settings)
        .con.execute(
            "SELECT customer_id, item_id FROM events WHERE type = 'purchase' GROUP BY customer_id, item_id "
            "ORDER BY customer_id, max(ts) DESC, item_id"
        )
        .df()
    )
    return bought.groupby("customer_id", sort=False)["item_id"].agg(list).to_dict()


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
    pools_kept: int = OnlineConfig().candidate_pools
    # (in-stock frozenset the pools were cut from, {(in_stock_only, category filters): pool})
    _pools: tuple[frozenset[str] | None, dict[tuple, frozenset[str]]] = field(
        default_factory=lambda: (None, {}), repr=False
    )

    @classmethod
    def from_workspace(
        cls, settings: Settings, features: pd.DataFrame, store: OnlineStore | None = None
    ) -> OnlineState:
        """Load the snapshot from the workspace tables and a customer-features frame; live data from `store`."""
        products = read_table(settings.tables_dir, "products")
        if products is None:
            raise FileNotFoundError(f"{settings.tables_dir / 'products.parquet'} is missing: ingest data first")
        refused = consent_refusals(settings, "personalization")
        return cls(
            in_stock=frozenset(products.loc[products["in_stock"].astype(bool), "item_id"]),
            category_of=dict(zip(products["item_id"], products["category"].astype(str))),
            name_of=dict(zip(products["item_id"], products["name"].astype(str))),
            purchased=latest_purchases(settings),  # latest first, so reasons name the latest relevant purchase
            refused_personalization=refused,
            features=features.set_index("customer_id", drop=False),
            store=store,
            pools_kept=settings.online.candidate_pools,
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
        live = frozenset((self.in_stock | on) - (overrides.keys() - on))
        with self._stock_lock:
            self._stock_cache = (overrides, live)
        return live  # the same object until the stock changes: the pools and the model's item masks key on it

    def item_pool(self, in_stock_only: bool, filters: tuple[tuple[frozenset[str], bool], ...] = ()) -> frozenset[str]:
        """Items (in stock only, or the whole catalogue) whose category is in (True) or out of (False) each filter's
        categories; one frozenset per stock snapshot and filters, so callers can cache what they derive from it."""
        base = self.current_in_stock() if in_stock_only else None
        key = (in_stock_only, filters)
        cut_from, pools = self._pools
        if cut_from is base and key in pools:
            return pools[key]
        pool = base if in_stock_only else frozenset(self.category_of)
        for chosen, keep in filters:
            pool = frozenset(i for i in pool if (self.category_of.get(i) in chosen) == keep)
        with self._stock_lock:
            cut_from, pools = self._pools
            if cut_from is not base or len(pools) >= self.pools_kept:  # stock changed, or too many kept
                pools = {}
            self._pools = (base, {**pools, key: pool})
        return pool

    def allowed_items(self, categories: list[str] | None = None) -> frozenset[str]:
        """In-stock items, restricted to the given categories when any are given."""
        return self.item_pool(True, () if categories is None else ((frozenset(categories), True),))

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
