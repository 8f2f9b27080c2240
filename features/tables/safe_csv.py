"""CSV files a spreadsheet can open safely: text cells that a spreadsheet would run as a formula are escaped.

Customer ids, item ids, product names and reasons come from the retailer's data; a value such as `=cmd|' /C calc'!A0`
or `@SUM(...)` would be executed by Excel or LibreOffice when the CSV is opened. Following OWASP's advice, a text
cell starting with `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading single quote, which spreadsheets show
as text. Numeric columns are left alone (a negative number is not a formula).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pandas as pd

from features.tables.store import atomic_write_bytes

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
ESCAPE = "'"


def escape_cell(value: Any) -> Any:
    """`value` with a leading quote when it is text a spreadsheet would read as a formula."""
    return ESCAPE + value if isinstance(value, str) and value.startswith(FORMULA_STARTS) else value


def escape_formulas(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of `df` whose text columns (object or string dtype) have formula-like cells escaped."""
    out = df.copy()
    for column in out.columns:
        if out[column].dtype == object or pd.api.types.is_string_dtype(out[column]):
            out[column] = out[column].map(escape_cell, na_action="ignore")
    return out


def write_safe_csv(df: pd.DataFrame, path: Path) -> Path:
    """Write `df` as CSV atomically, formula-like text escaped, the header too (column names can come from data);
    every text cell is quoted, so a carriage return inside one cannot end the row early."""
    safe = escape_formulas(df)
    safe.columns = [escape_cell(str(c)) for c in safe.columns]
    atomic_write_bytes(Path(path), safe.to_csv(index=False, quoting=csv.QUOTE_NONNUMERIC).encode())
    return Path(path)
