"""Small hand-made retailer data and settings shared by the training tests (no upstream synthesiser needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.tables.store import write_table
from patron.config import Settings, load_settings

TINY_TRAINING = {
    "recommender": {"factors": 8, "iterations": 5, "holdout_days": 30},
    "churn": {
        "num_boost_round": 300,
        "early_stopping_rounds": 10,
        "params": {"num_leaves": 7, "min_data_in_leaf": 10, "learning_rate": 0.1},
    },
}


def make_events(customers: int = 300, items: int = 60, days: int = 540, seed: int = 1) -> pd.DataFrame:
    """Events of customers who buy from a preferred group of items at their own rate until they lapse."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2025-01-01")
    rows = []
    for c in range(customers):
        rate, lifetime, group = rng.gamma(1.0, 0.05), rng.integers(60, days + 200), rng.integers(0, items // 10)
        t = rng.exponential(1 / rate)
        while t < min(days, lifetime):
            item = group * 10 + rng.integers(0, 10) if rng.random() < 0.8 else rng.integers(0, items)
            ts = start + pd.Timedelta(seconds=int(t * 86400))
            rows.append((f"C{c}", f"I{item}", ts, "view"))
            if rng.random() < 0.5:
                rows.append((f"C{c}", f"I{item}", ts + pd.Timedelta(minutes=5), "purchase"))
            t += rng.exponential(1 / rate)
    ev = pd.DataFrame(rows, columns=["customer_id", "item_id", "ts", "type"])
    ev["ts"] = ev["ts"].astype("datetime64[us]")
    ev.insert(0, "event_id", [f"E{i}" for i in range(len(ev))])
    ev["quantity"] = 1
    ev["unit_price"] = 10.0
    ev["channel"] = "online"
    ev["order_id"] = ev["event_id"].where(ev["type"] == "purchase")
    return ev


@pytest.fixture(scope="session")
def tables_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace holding only an events table (the one mandatory table)."""
    home = tmp_path_factory.mktemp("training_ws")
    write_table(make_events(), home / "tables", "events")
    return home


def tiny_settings(home: Path, store: Path, **overrides: object) -> Settings:
    """Settings on the shared tables with a private MLflow store under `store`."""
    tracking = {"uri": f"sqlite:///{store / 'mlflow.db'}", "artifact_location": (store / "artifacts").as_uri()}
    merged = {**TINY_TRAINING, "workspace": str(home), "tracking": tracking}
    for key, value in overrides.items():
        merged[key] = {**merged.get(key, {}), **value} if isinstance(value, dict) else value
    return load_settings(**merged)
