"""A frame to the output file a user named: CSV (formula-like text escaped) or Parquet, chosen by its extension."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from features.tables.safe_csv import write_safe_csv
from features.tables.store import write_parquet


def write_csv_or_parquet(df: pd.DataFrame, path: Path) -> Path:
    """Write CSV (formula-like text escaped, features/tables/safe_csv.py) or Parquet (by extension) atomically."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return write_parquet(df, path)
    if suffix == ".csv":
        return write_safe_csv(df, path)
    raise ValueError(f"out: {path} must end in .csv or .parquet")
