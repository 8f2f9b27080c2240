"""Merge the events recorded online into the workspace's events table through the normal ingest validation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd

from features.ingest import IngestReport, ingest_source
from features.store import write_json, write_parquet
from patron.config import Settings
from serving.online_store import EVENT_FIELDS, OnlineStore, open_store

CHECKPOINT = "online_ingested.json"  # in the workspace: the last online sequence number merged


def checkpoint(settings: Settings) -> int:
    """Sequence number of the last online event already merged into the events table (0: none)."""
    path = settings.workspace / CHECKPOINT
    return int(json.loads(path.read_text())["after"]) if path.exists() else 0


def sync_online_events(settings: Settings, store: OnlineStore | None = None,
                       batch: int = 200_000) -> IngestReport | None:
    """Ingest the online events not merged yet (None when there are none), then move the checkpoint past them.

    The rows go through `ingest_source` like any other source, so the contract checks and quarantine apply, and
    an event id already in the table counts as already present: running it twice merges each event once.
    """
    own = store is None
    store = store or open_store(settings)
    try:
        rows = store.event_log(after=checkpoint(settings), limit=batch)
    finally:
        if own:
            store.close()
    if not rows:
        return None
    events = pd.DataFrame([e for _, e in rows], columns=list(EVENT_FIELDS))
    first_seen = events.groupby("customer_id")["ts"].min()
    # Customers first seen online get a customer row (signed up at their first event); known ones stay as they are.
    customers = pd.DataFrame({"customer_id": first_seen.index, "signup_date": first_seen.to_numpy()})
    drop: Path = settings.raw_dir / "online" / f"after-{rows[0][0] - 1}"
    write_parquet(events.astype(object), drop / "events.parquet")
    write_parquet(customers, drop / "customers.parquet")
    # A folder of contract-shaped Parquet tables is what the "synthetic" reader takes.
    report = ingest_source(settings, "synthetic", path=drop)
    write_json({"after": rows[-1][0]}, settings.workspace / CHECKPOINT)
    shutil.rmtree(drop, ignore_errors=True)
    return report
