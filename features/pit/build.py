"""Point-in-time feature builds: customer features, churn labels, training sets and the interaction matrix.

Features at a cutoff t use records strictly before t; churn labels use purchases in [t - lookback_days, t) (who is
active) and [t, t + horizon_days) (who churned); see features.pit.customer_features and features.pit.labels for the
definitions, written once as DuckDB SQL over the workspace Parquet tables.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import pandas as pd

import features.pit.customer_features as customer_features_module
from features.pit.customer_features import compute_customer_features
from features.pit.cutoffs import CutoffPlan, as_cutoff, cutoff_plan, data_end
from features.pit.interactions import compute_interactions
from features.pit.labels import compute_churn_labels
from features.tables.contract import TABLES
from features.tables.store import table_path, write_json, write_parquet
from features.tables.warehouse import Warehouse
from patron.config import Settings

__all__ = [
    "BuildReport",
    "CutoffPlan",
    "build_features",
    "churn_labels",
    "customer_features",
    "cutoff_plan",
    "data_end",
    "interactions",
    "training_set",
]

# Cached feature files are recomputed whenever a feature definition (the SQL module's source) changes.
FEATURES_VERSION = hashlib.sha256(Path(customer_features_module.__file__).read_bytes()).hexdigest()[:16]

Cutoff = date | datetime | str | pd.Timestamp


def _features_path(settings: Settings, kind: str, cutoff: pd.Timestamp) -> Path:
    return settings.features_dir / f"{kind}_{cutoff.date().isoformat()}.parquet"


def _source_signature(settings: Settings) -> dict:
    """What a cached feature file depends on: the table files, the feature config and the code version."""
    tables = {}
    for name in TABLES:
        path = table_path(settings.tables_dir, name)
        if path.exists():
            stat = path.stat()
            tables[name] = [stat.st_size, stat.st_mtime_ns]
    f = settings.features
    rules = {
        k: getattr(f, k)
        for k in (
            "windows_days",
            "decay_half_lives_days",
            "channel_shift_days",
            "offer_ignored_after_days",
            "points_expiry_days",
        )
    }
    return {"version": FEATURES_VERSION, **rules, "tables": tables}


def _compute_and_cache(wh: Warehouse, settings: Settings, cutoff: pd.Timestamp) -> pd.DataFrame:
    df = compute_customer_features(wh, cutoff, settings.features)
    path = write_parquet(df, _features_path(settings, "customer_features", cutoff))
    write_json(_source_signature(settings), path.with_suffix(".json"))
    return df


def customer_features(settings: Settings, cutoff: Cutoff) -> pd.DataFrame:
    """One row per customer known before the cutoff: customer_id, numeric features, categoricals (cached)."""
    cutoff = as_cutoff(cutoff)
    path = _features_path(settings, "customer_features", cutoff)
    meta = path.with_suffix(".json")
    if path.exists() and meta.exists() and json.loads(meta.read_text()) == _source_signature(settings):
        return pd.read_parquet(path)
    with Warehouse(settings) as wh:
        return _compute_and_cache(wh, settings, cutoff)


def churn_labels(settings: Settings, cutoff: Cutoff, horizon_days: int | None = None) -> pd.DataFrame:
    """DataFrame[customer_id, active (bool), churned (Int64 0/1, NA when not active)] at the cutoff."""
    cfg = settings.features
    with Warehouse(settings) as wh:
        return compute_churn_labels(
            wh, as_cutoff(cutoff), cfg.lookback_days, cfg.horizon_days if horizon_days is None else horizon_days
        )


def interactions(settings: Settings, cutoff: Cutoff, start: Cutoff | None = None) -> pd.DataFrame:
    """DataFrame[customer_id, item_id, weight]: decayed, weighted events in [start, cutoff)."""
    with Warehouse(settings) as wh:
        return compute_interactions(
            wh, as_cutoff(cutoff), settings.features.interactions, start=None if start is None else pd.Timestamp(start)
        )


def training_set(settings: Settings, cutoffs: list[Cutoff]) -> pd.DataFrame:
    """Active customers at each cutoff, stacked: customer_id, cutoff, <features>, churned (int 0/1)."""
    if not cutoffs:
        raise ValueError("cutoffs: give at least one cutoff")
    end = data_end(settings)
    horizon = settings.features.horizon_days
    parts = []
    for raw in cutoffs:
        cutoff = as_cutoff(raw)
        if cutoff + pd.Timedelta(days=horizon) > end:
            raise ValueError(
                f"cutoffs: the label window of {cutoff.date()} ({horizon} days) ends after "
                f"the end of the data ({end.date()}), so its labels would be wrong"
            )
        labels = churn_labels(settings, cutoff)
        labels = labels.loc[labels["active"], ["customer_id", "churned"]]
        part = customer_features(settings, cutoff).merge(labels, on="customer_id", how="inner")
        part.insert(1, "cutoff", cutoff)
        parts.append(part)
    out = pd.concat(parts, ignore_index=True)
    out["churned"] = out["churned"].astype("int64")
    return out


@dataclass
class BuildReport:
    """What `patron features build` computed and wrote."""

    cutoff: pd.Timestamp
    horizon_days: int
    data_end: pd.Timestamp
    customers: int
    active: int
    churned: int
    features: int
    interactions: int
    seconds: float
    paths: list[Path] = field(default_factory=list)

    @property
    def label_window_complete(self) -> bool:
        """Whether [cutoff, cutoff + horizon) lies within the data, so that the labels mean something."""
        return self.cutoff + pd.Timedelta(days=self.horizon_days) <= self.data_end

    @property
    def base_rate(self) -> float:
        """Share of active customers labelled churned (NaN when nobody is active)."""
        return self.churned / self.active if self.active else float("nan")

    def summary(self) -> str:
        """Human-readable summary."""
        lines = [
            f"cutoff {self.cutoff.date()} (data end {self.data_end.date()}, horizon {self.horizon_days} days)",
            f"  customers {self.customers}, active {self.active}, churn base rate {self.base_rate:.1%}",
            f"  features {self.features}, interactions {self.interactions}, {self.seconds:.1f} s",
        ]
        if not self.label_window_complete:
            lines.append("  note: the label window runs past the end of the data, so labels are not meaningful")
        lines += [f"  wrote {p}" for p in self.paths]
        return "\n".join(lines)


def build_features(settings: Settings, cutoff: Cutoff | None = None, horizon_days: int | None = None) -> BuildReport:
    """Compute and write customer features, churn labels and interactions at the cutoff (default: data end)."""
    started = time.perf_counter()
    horizon = settings.features.horizon_days if horizon_days is None else horizon_days
    if horizon <= 0:
        raise ValueError(f"horizon_days: must be positive, got {horizon}")
    end = data_end(settings)
    cutoff = end if cutoff is None else as_cutoff(cutoff)
    with Warehouse(settings) as wh:
        feats = _compute_and_cache(wh, settings, cutoff)
        labels = compute_churn_labels(wh, cutoff, settings.features.lookback_days, horizon)
        inter = compute_interactions(wh, cutoff, settings.features.interactions)
    paths = [
        _features_path(settings, "customer_features", cutoff),
        write_parquet(labels, _features_path(settings, "labels", cutoff)),
        write_parquet(inter, _features_path(settings, "interactions", cutoff)),
    ]
    return BuildReport(
        cutoff=cutoff,
        horizon_days=horizon,
        data_end=end,
        customers=len(feats),
        active=int(labels["active"].sum()),
        churned=int(labels["churned"].sum()),
        features=feats.shape[1] - 1,
        interactions=len(inter),
        seconds=time.perf_counter() - started,
        paths=paths,
    )
