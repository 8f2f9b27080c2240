"""Cutoff dates: the end of the data and the train / validation / test / current cutoffs derived from it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import pandas as pd

from features.tables.warehouse import Warehouse
from patron.config import Settings


@dataclass(frozen=True)
class CutoffPlan:
    """Cutoffs for training (oldest first), validation, test and current scoring (= the end of the data)."""

    train: list[pd.Timestamp]
    valid: pd.Timestamp
    test: pd.Timestamp
    current: pd.Timestamp


def as_cutoff(value: date | datetime | str | pd.Timestamp) -> pd.Timestamp:
    """A cutoff as a tz-naive midnight Timestamp; raises ValueError for anything else."""
    ts = pd.Timestamp(value)
    if ts is pd.NaT or ts.tz is not None or ts != ts.normalize():
        raise ValueError(f"cutoff: expected a tz-naive date (midnight), got {value!r}")
    return ts


def data_end(settings: Settings) -> pd.Timestamp:
    """Midnight after the last event in tables/events.parquet."""
    with Warehouse(settings) as wh:
        last = wh.scalar("SELECT max(ts) FROM events")
    if last is None:
        raise ValueError("events: the table is empty, so the data has no end")
    return pd.Timestamp(last).normalize() + pd.Timedelta(days=1)


def cutoff_plan(settings: Settings) -> CutoffPlan:
    """Cutoffs from settings.features.*_days_before_end, counted back from data_end."""
    end = data_end(settings)
    cfg = settings.features
    before = lambda days: end - pd.Timedelta(days=days)  # noqa: E731
    return CutoffPlan(
        train=sorted(before(d) for d in cfg.train_cutoffs_days_before_end),
        valid=before(cfg.valid_cutoff_days_before_end),
        test=before(cfg.test_cutoff_days_before_end),
        current=end,
    )
