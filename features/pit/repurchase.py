"""Repurchase cycles: each customer's own interval between purchases of an item, and when it is due again."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from statistics import median
from typing import Any

import numpy as np
import pandas as pd

from features.tables.store import read_table
from patron.config import RepurchaseConfig, Settings


def day_number(ts: Any) -> int:
    """Calendar day of a timestamp (tz-naive, or ISO text) as days since 1970-01-01."""
    return int(pd.Timestamp(ts).value // 86_400_000_000_000)


def interval_days(days: Iterable[int], min_repeats: int) -> float | None:
    """Median gap in days between distinct purchase days, or None with fewer than `min_repeats` repeats."""
    distinct = sorted(set(days))
    if len(distinct) - 1 < min_repeats:
        return None
    return float(median(np.diff(distinct)))


def purchase_days(events: pd.DataFrame, min_purchases: int) -> dict[str, dict[str, tuple[int, ...]]]:
    """customer -> item -> distinct purchase days, for pairs bought on at least `min_purchases` days."""
    bought = events.loc[events["type"] == "purchase", ["customer_id", "item_id", "ts"]]
    days = pd.to_datetime(bought["ts"]).to_numpy().astype("datetime64[D]").astype(np.int64)
    pairs = pd.DataFrame(
        {
            "customer_id": bought["customer_id"].astype(str).to_numpy(),
            "item_id": bought["item_id"].astype(str).to_numpy(),
            "day": days,
        }
    ).drop_duplicates()
    pairs = pairs[pairs.groupby(["customer_id", "item_id"])["day"].transform("size") >= min_purchases]
    pairs = pairs.sort_values(["customer_id", "item_id", "day"], kind="stable")
    out: dict[str, dict[str, tuple[int, ...]]] = {}
    for (customer, item), group in pairs.groupby(["customer_id", "item_id"], sort=False)["day"]:
        out.setdefault(customer, {})[item] = tuple(int(d) for d in group)
    return out


@dataclass
class RepurchaseCycles:
    """Purchase days of the (customer, item) pairs that may form a cycle, and the day the batch history ends."""

    config: RepurchaseConfig
    history: dict[str, dict[str, tuple[int, ...]]] = field(repr=False)
    as_of: int  # day number of the last event in the batch history

    @classmethod
    def from_events(cls, events: pd.DataFrame, config: RepurchaseConfig) -> RepurchaseCycles:
        """Cycles from events [customer_id, item_id, ts, type]; a pair one purchase short is kept for live ones."""
        as_of = day_number(events["ts"].max()) if len(events) else 0
        return cls(config, purchase_days(events, max(config.min_repeats, 1)), as_of)

    @classmethod
    def from_workspace(cls, settings: Settings) -> RepurchaseCycles:
        """Cycles from the workspace's events table."""
        events = read_table(settings.tables_dir, "events", columns=["customer_id", "item_id", "ts", "type"])
        if events is None:
            raise FileNotFoundError(f"{settings.tables_dir / 'events.parquet'} is missing: ingest data first")
        return cls.from_events(events, settings.repurchase)

    def now(self, live_events: list[dict[str, Any]]) -> int:
        """Today per `clock`: the latest of the batch history and the customer's live events, or the wall clock."""
        if self.config.clock == "wall":
            return day_number(datetime.now(UTC).replace(tzinfo=None))
        return max([self.as_of] + [day_number(e["ts"]) for e in live_events])

    def due(self, customer_id: str, live_events: list[dict[str, Any]]) -> list[tuple[str, float]]:
        """Items due again (elapsed / interval in [due_factor, forget_after_cycles]), most overdue first."""
        cfg = self.config
        days = {item: list(d) for item, d in self.history.get(customer_id, {}).items()}
        for e in live_events:
            if e["type"] == "purchase":
                days.setdefault(e["item_id"], []).append(day_number(e["ts"]))
        today = self.now(live_events)
        out = []
        for item, bought in days.items():
            interval = interval_days(bought, cfg.min_repeats)
            if not interval:
                continue
            ratio = (today - max(bought)) / interval
            if cfg.due_factor <= ratio <= cfg.forget_after_cycles:
                out.append((item, ratio))
        return sorted(out, key=lambda p: (-p[1], p[0]))
