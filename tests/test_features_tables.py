"""Small random contract tables for the feature tests (and a check that they satisfy the contract)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from features.tables.contract import CHANNELS, EVENT_TYPES, LOYALTY_TIERS, OFFER_TYPES, TABLES, TICKET_CATEGORIES
from features.tables.store import write_table
from patron.config import Settings, load_settings

START = pd.Timestamp("2025-01-01")


def _times(rng: np.random.Generator, n: int, start: pd.Timestamp, days: float) -> pd.Series:
    seconds = rng.integers(0, int(days * 86400), size=n)
    return pd.Series(start + pd.to_timedelta(seconds, unit="s"), dtype="datetime64[ns]")


def random_tables(
    seed: int,
    customers: int = 8,
    items: int = 6,
    events: int = 80,
    days: int = 200,
    start: pd.Timestamp = START,
    prefix: str = "c",
) -> dict[str, pd.DataFrame]:
    """Every contract table with random content spread over [start, start + days)."""
    rng = np.random.default_rng(seed)
    cust = [f"{prefix}{i}" for i in range(customers)]
    item = [f"i{i}" for i in range(items)]
    n_t, n_s, n_l, n_o = (max(1, customers) for _ in range(4))

    def ids(n: int) -> np.ndarray:
        return rng.choice(cust, size=n)

    def maybe_null(ts: pd.Series, share: float) -> pd.Series:
        return ts.mask(rng.random(len(ts)) < share)

    opened = _times(rng, n_t, start, days)
    sent = _times(rng, n_o, start, days)
    tables = {
        "customers": pd.DataFrame(
            {
                "customer_id": cust,
                "signup_date": _times(rng, customers, start - pd.Timedelta(days=100), days * 0.8 + 100).dt.normalize(),
                "region": rng.choice(["north", "south", "east"], size=customers),
                "birth_year": pd.array(rng.integers(1950, 2005, size=customers), dtype="Int64"),
                "loyalty_tier": rng.choice(LOYALTY_TIERS, size=customers),
                "preferred_channel": rng.choice(CHANNELS, size=customers),
            }
        ),
        "products": pd.DataFrame(
            {
                "item_id": item,
                "name": item,
                "category": rng.choice(["food", "toys", "home"], size=items),
                "department": "d",
                "brand": "b",
                "unit_price": rng.uniform(1, 50, size=items).round(2),
                "in_stock": True,
                "launched_at": pd.Series([start] * items, dtype="datetime64[ns]"),
            }
        ),
        "events": pd.DataFrame(
            {
                "event_id": [f"{prefix}e{i}" for i in range(events)],
                "customer_id": ids(events),
                "item_id": rng.choice(item, size=events),
                "ts": _times(rng, events, start, days),
                "type": rng.choice(EVENT_TYPES, size=events, p=[0.4, 0.15, 0.35, 0.1]),
                "quantity": pd.array(rng.integers(1, 4, size=events), dtype="Int64"),
                "unit_price": rng.uniform(1, 50, size=events).round(2),
                "channel": rng.choice(CHANNELS, size=events),
                "order_id": [f"{prefix}o{k}" for k in rng.integers(0, events // 2, size=events)],
            }
        ),
        "tickets": pd.DataFrame(
            {
                "ticket_id": [f"{prefix}t{i}" for i in range(n_t)],
                "customer_id": ids(n_t),
                "opened_at": opened,
                "resolved_at": maybe_null(opened + pd.to_timedelta(rng.integers(1, 40 * 86400, n_t), unit="s"), 0.2),
                "category": rng.choice(TICKET_CATEGORIES, size=n_t),
                "satisfaction": pd.array(rng.integers(1, 6, size=n_t), dtype="Int64"),
            }
        ),
        "surveys": pd.DataFrame(
            {
                "customer_id": ids(n_s),
                "ts": _times(rng, n_s, start, days),
                "nps": pd.array(rng.integers(0, 11, size=n_s), dtype="Int64"),
                "csat": pd.array(rng.integers(1, 6, size=n_s), dtype="Int64"),
            }
        ).drop_duplicates(["customer_id", "ts"]),
        "loyalty": pd.DataFrame(
            {
                "customer_id": ids(n_l),
                "ts": _times(rng, n_l, start, days),
                "points_delta": pd.array(rng.integers(-50, 200, size=n_l), dtype="Int64"),
                "tier_after": rng.choice(LOYALTY_TIERS, size=n_l),
            }
        ).drop_duplicates(["customer_id", "ts"]),
        "offers": pd.DataFrame(
            {
                "offer_id": [f"{prefix}f{i}" for i in range(n_o)],
                "customer_id": ids(n_o),
                "sent_at": sent,
                "offer_type": rng.choice(OFFER_TYPES, size=n_o),
                "cost": 5.0,
                "randomized": False,
                "redeemed_at": maybe_null(sent + pd.to_timedelta(rng.integers(1, 30 * 86400, n_o), unit="s"), 0.5),
            }
        ),
        "consent": pd.DataFrame(
            {
                "customer_id": cust,
                "personalization": True,
                "marketing": True,
                "updated_at": pd.Series([start] * customers, dtype="datetime64[ns]"),
            }
        ),
    }
    return tables


def write_workspace(home: Path, tables: dict[str, pd.DataFrame], **overrides) -> Settings:
    """Write the tables as a workspace under `home` and return settings pointing at it."""
    settings = load_settings(workspace=str(home), **overrides)
    for name, df in tables.items():
        write_table(df, settings.tables_dir, name)
    return settings


def test_random_tables_satisfy_the_contract() -> None:
    tables = random_tables(seed=3)
    known = {"customers": set(tables["customers"]["customer_id"]), "products": set(tables["products"]["item_id"])}
    for name, df in tables.items():
        validated = TABLES[name].schema(known).validate(df)
        assert len(validated) == len(df), name
