"""What a source reader hands the ingest: contract-shaped tables before validation, and their timestamp formats."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

AUTO = "auto"  # timestamp format: ISO 8601, else whatever pandas can read element by element
UNIX = "unix"  # timestamp format: seconds since the epoch


@dataclass
class Loaded:
    """Contract-shaped tables read from a source, before type coercion and validation."""

    tables: dict[str, pd.DataFrame]
    timestamp_formats: dict[str, dict[str, str]] = field(default_factory=dict)  # table -> column -> format
    rejected: dict[str, pd.DataFrame] = field(default_factory=dict)  # rows refused while reading, with `reason`
    origin: str = ""


def parse_timestamps(values: pd.Series, fmt: str) -> pd.Series:
    """Timestamps from raw values in the given format; unparsable values become NaT."""
    if pd.api.types.is_datetime64_any_dtype(values):
        return values.dt.tz_localize(None) if getattr(values.dt, "tz", None) is not None else values
    if fmt == UNIX:
        return pd.to_datetime(pd.to_numeric(values, errors="coerce"), unit="s")
    if fmt == AUTO:
        parsed = pd.to_datetime(values, format="ISO8601", errors="coerce")
        retry = parsed.isna() & values.notna()
        if retry.any():
            parsed[retry] = pd.to_datetime(values[retry], format="mixed", errors="coerce")
        return parsed
    return pd.to_datetime(values, format=fmt, errors="coerce")
