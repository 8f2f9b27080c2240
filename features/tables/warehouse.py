"""A DuckDB session over the workspace Parquet tables: one view per contract table that is present."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from features.tables.contract import TABLES
from features.tables.store import table_path
from patron.config import Settings


class Warehouse:
    """In-memory DuckDB connection with a view `<table>` over settings.tables_dir/<table>.parquet."""

    def __init__(self, settings: Settings, tables_dir: Path | None = None) -> None:
        self.tables_dir = tables_dir or settings.tables_dir
        cfg = settings.features
        config: dict[str, Any] = {}
        if cfg.duckdb_threads:
            config["threads"] = cfg.duckdb_threads
        if cfg.duckdb_memory_limit:
            config["memory_limit"] = cfg.duckdb_memory_limit
        self.con = duckdb.connect(config=config)
        self.con.execute("SET enable_progress_bar = false")
        self.tables: dict[str, list[str]] = {}
        for name in TABLES:
            path = table_path(self.tables_dir, name)
            if path.exists():
                literal = str(path).replace("'", "''")
                self.con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{literal}')")
                self.tables[name] = [row[0] for row in self.con.execute(f"DESCRIBE {name}").fetchall()]
        if "events" not in self.tables:
            raise FileNotFoundError(
                f"events: no table at {table_path(self.tables_dir, 'events')} (run `patron data ingest` first)"
            )

    def has(self, table: str, column: str | None = None) -> bool:
        """Whether a table (and optionally one of its columns, with at least one non-null value) is present."""
        if table not in self.tables:
            return False
        if column is None:
            return True
        if column not in self.tables[table]:
            return False
        # An optional column written entirely null carries no information: treat it as absent.
        return self.scalar(f"SELECT count({column}) FROM {table}") > 0

    def df(self, sql: str, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """Run a query and return its result as a DataFrame."""
        return self.con.execute(sql, params or {}).df()

    def scalar(self, sql: str, params: dict[str, Any] | None = None) -> Any:
        """Run a query returning one value."""
        row = self.con.execute(sql, params or {}).fetchone()
        return row[0] if row else None

    def close(self) -> None:
        """Release the DuckDB connection."""
        self.con.close()

    def __enter__(self) -> Warehouse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
