"""Merge the events, tickets and survey answers recorded online into the workspace tables through the ingest."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd

from features.ingest.pipeline import IngestReport, ingest_source
from features.tables.store import write_json, write_parquet
from patron.config import Settings
from serving.online.backend import open_store
from serving.online.store import EVENT_FIELDS, SIGNAL_FIELDS, SIGNAL_TIME, OnlineStore

CHECKPOINT = "online_ingested.json"  # in the workspace: the last online sequence number merged, per table
_CHECKPOINT_KEYS = {"events": "after", "tickets": "tickets", "surveys": "surveys"}


def checkpoints(settings: Settings) -> dict[str, int]:
    """Sequence number of the last online row already merged, per table (events, tickets, surveys; 0: none)."""
    path = settings.workspace / CHECKPOINT
    saved = json.loads(path.read_text()) if path.exists() else {}
    return {table: int(saved.get(key, 0)) for table, key in _CHECKPOINT_KEYS.items()}


def checkpoint(settings: Settings) -> int:
    """Sequence number of the last online event already merged into the events table (0: none)."""
    return checkpoints(settings)["events"]


def sync_online_events(
    settings: Settings, store: OnlineStore | None = None, batch: int = 200_000
) -> IngestReport | None:
    """Ingest the online events, tickets and survey answers not merged yet (None when there are none), then move
    the checkpoints past them.

    The rows go through `ingest_source` like any other source, so the contract checks and quarantine apply, and
    a key already in its table counts as already present: running it twice merges each row once.
    """
    own = store is None
    store = store or open_store(settings)
    done = checkpoints(settings)
    try:
        logs = {
            "events": store.event_log(after=done["events"], limit=batch),
            **{kind: store.signal_log(kind, after=done[kind], limit=batch) for kind in SIGNAL_FIELDS},
        }
    finally:
        if own:
            store.close()
    if not any(logs.values()):
        return None
    fields = {"events": EVENT_FIELDS, **SIGNAL_FIELDS}
    times = {"events": "ts", **SIGNAL_TIME}
    # The reader needs an events table, so it is written even when empty.
    tables = {
        name: pd.DataFrame([r for _, r in rows], columns=list(fields[name]))
        for name, rows in logs.items()
        if rows or name == "events"
    }
    seen = pd.concat(
        [t[["customer_id", times[name]]].set_axis(["customer_id", "ts"], axis=1) for name, t in tables.items()]
    )
    first_seen = seen.groupby("customer_id")["ts"].min()
    # Customers first seen online get a customer row (signed up at their first row); known ones stay as they are.
    customers = pd.DataFrame({"customer_id": first_seen.index, "signup_date": first_seen.to_numpy()})
    drop: Path = settings.raw_dir / "online" / "-".join(f"{k}{v}" for k, v in done.items())
    for name, table in tables.items():
        write_parquet(table.astype(object), drop / f"{name}.parquet")
    write_parquet(customers, drop / "customers.parquet")
    # A folder of contract-shaped Parquet tables is what the "synthetic" reader takes.
    report = ingest_source(settings, "synthetic", path=drop)
    moved = {**done, **{name: rows[-1][0] for name, rows in logs.items() if rows}}
    write_json({_CHECKPOINT_KEYS[name]: seq for name, seq in moved.items()}, settings.workspace / CHECKPOINT)
    shutil.rmtree(drop, ignore_errors=True)
    return report
