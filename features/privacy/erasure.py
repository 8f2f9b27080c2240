"""Right to be forgotten in the workspace: remove customers' rows from its files and keep a hash-only erasure log.

The erasure log (`privacy.erasure_log_path`) keeps a salted hash of each erased id and the date, nothing else; the
ingest consults it, so re-ingesting an original source file does not bring an erased customer back.
"""

from __future__ import annotations

import fcntl
import json
from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from features.privacy.pseudonyms import customer_key
from features.tables.store import atomic_write_bytes, write_parquet
from patron.config import Settings

ID_COLUMN = "customer_id"
SCRUBBED_SUFFIXES = (".parquet", ".csv")


def erasure_log_path(settings: Settings) -> Path:
    """The erasure log (`privacy.erasure_log_path`, default WORKSPACE/privacy/erasure_log.jsonl)."""
    return settings.privacy.erasure_log_path or settings.workspace / "privacy" / "erasure_log.jsonl"


def erased_keys(settings: Settings) -> frozenset[str]:
    """Salted hashes of every customer in the erasure log."""
    path = erasure_log_path(settings)
    if not path.exists():
        return frozenset()
    return frozenset(json.loads(line)["key"] for line in path.read_text().splitlines() if line.strip())


def record_erasure(settings: Settings, customer_ids: list[str]) -> list[str]:
    """Append the customers' salted hashes with today's date to the erasure log; returns the keys new to it."""
    path = erasure_log_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = list(dict.fromkeys(customer_key(settings, c) for c in customer_ids))
    with path.open("a+", encoding="utf-8") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # `patron forget` and /admin/erase on several workers append alike
        fh.seek(0)
        known = {json.loads(line)["key"] for line in fh if line.strip()}
        new = [k for k in keys if k not in known]
        fh.write("".join(json.dumps({"key": k, "date": date.today().isoformat()}) + "\n" for k in new))
        fh.flush()
    return new


def erased_ids(settings: Settings, ids: pd.Series, keys: frozenset[str] | None = None) -> set[str]:
    """The ids among `ids` whose salted hash is in the erasure log (each distinct id hashed once)."""
    keys = erased_keys(settings) if keys is None else keys
    if not keys:
        return set()
    return {c for c in pd.unique(ids.dropna().astype(str)) if customer_key(settings, c) in keys}


def drop_erased(settings: Settings, df: pd.DataFrame, keys: frozenset[str] | None = None) -> pd.DataFrame:
    """`df` without the rows of erased customers (unchanged when it has no customer_id column)."""
    if ID_COLUMN not in df.columns:
        return df
    gone = erased_ids(settings, df[ID_COLUMN], keys)
    return df[~df[ID_COLUMN].astype(str).isin(gone)] if gone else df


def _scrub(path: Path, customer_ids: set[str]) -> int:
    """Rewrite one Parquet or CSV file without the customers' rows (atomically); returns the rows removed."""
    if path.suffix == ".parquet":
        if ID_COLUMN not in pq.read_schema(path).names:
            return 0
        df = pd.read_parquet(path)
    else:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
        if ID_COLUMN not in df.columns:
            return 0
    keep = ~df[ID_COLUMN].astype(str).isin(customer_ids)
    removed = int((~keep).sum())
    if removed:
        if path.suffix == ".parquet":
            write_parquet(df[keep], path)
        else:
            atomic_write_bytes(path, df[keep].to_csv(index=False).encode())
    return removed


def workspace_files(settings: Settings) -> list[Path]:
    """Every Parquet and CSV file in the workspace outside `privacy.keep_dirs` (tables, features, outputs...)."""
    root = settings.workspace
    kept = {root / d for d in settings.privacy.keep_dirs}
    return sorted(
        p
        for p in root.rglob("*")
        if p.suffix in SCRUBBED_SUFFIXES
        and p.is_file()
        and not p.name.startswith(".")
        and not any(k in p.parents for k in kept)
    )


def scrub_workspace(settings: Settings, customer_ids: set[str]) -> dict[str, int]:
    """Remove the customers' rows from every workspace file that holds any; returns rows removed per file."""
    removed = {
        str(path.relative_to(settings.workspace)): _scrub(path, customer_ids) for path in workspace_files(settings)
    }
    return {path: n for path, n in removed.items() if n}
