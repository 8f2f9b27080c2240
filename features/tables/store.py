"""Workspace tables on disk: Parquet files written atomically (write to a temporary file, then rename)."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write bytes to `path` so that readers see the old file or the new one, never a partial one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_parquets(frames: dict[Path, pd.DataFrame]) -> None:
    """Write DataFrames to Parquet all or none: every file is written in full before any is renamed into place."""
    staged: dict[Path, str] = {}
    try:
        for path, df in frames.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, staged[path] = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            os.close(fd)
            df.to_parquet(staged[path], index=False)
        for path, tmp in staged.items():  # renames need no space: a full disk has already failed above
            os.replace(tmp, path)
    finally:
        for tmp in staged.values():
            Path(tmp).unlink(missing_ok=True)


def write_parquet(df: pd.DataFrame, path: Path) -> Path:
    """Write a DataFrame to Parquet atomically."""
    write_parquets({path: df})
    return path


def write_json(obj: Any, path: Path) -> Path:
    """Write JSON atomically."""
    atomic_write_bytes(path, json.dumps(obj, indent=2, default=str).encode())
    return path


def table_path(tables_dir: Path, name: str) -> Path:
    return tables_dir / f"{name}.parquet"


def read_table(tables_dir: Path, name: str, columns: list[str] | None = None) -> pd.DataFrame | None:
    """A workspace table, or None when the retailer did not provide it."""
    path = table_path(tables_dir, name)
    if not path.exists():
        return None
    return pd.read_parquet(path, columns=columns)


def write_table(df: pd.DataFrame, tables_dir: Path, name: str) -> Path:
    """Replace a workspace table atomically."""
    return write_parquet(df, table_path(tables_dir, name))


def write_tables(frames: dict[str, pd.DataFrame], tables_dir: Path) -> None:
    """Replace several workspace tables all or none (a full disk leaves every table as it was)."""
    write_parquets({table_path(tables_dir, name): df for name, df in frames.items()})


def fingerprint(df: pd.DataFrame) -> str:
    """A stable SHA-256 of a DataFrame's content (column names, types and values)."""
    h = hashlib.sha256()
    h.update(json.dumps([(c, str(t)) for c, t in df.dtypes.items()]).encode())
    h.update(pd.util.hash_pandas_object(df, index=False).values.tobytes())
    return h.hexdigest()
