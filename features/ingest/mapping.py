"""Generic CSV/Parquet ingest: a YAML mapping file says which file feeds which contract table and how columns map."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from features.ingest.bounded_read import SourceError, read_delimited, read_parquet_bounded
from features.ingest.raw_tables import AUTO, Loaded
from features.tables.contract import TABLES, TS
from patron.config import InputLimitsConfig


class TableMapping(BaseModel):
    """How one source file becomes one contract table."""

    model_config = ConfigDict(extra="forbid")

    file: str | None = None  # relative to --path (a folder) or to the mapping file; None: --path itself
    separator: str | None = None  # default: tab for .tsv/.tab, comma otherwise
    encoding: str = "utf-8"
    columns: dict[str, str] = {}  # source column -> contract column
    timestamp_format: str | dict[str, str] = AUTO  # strftime format, "unix" or "auto"; or per contract column
    defaults: dict[str, str | int | float | bool | None] = {}  # contract column -> constant for every row
    key_from_row: bool = False  # build the table's key from the file name and row number


class Mapping(BaseModel):
    """A mapping file: one entry per contract table to fill."""

    model_config = ConfigDict(extra="forbid")

    tables: dict[str, TableMapping]

    @field_validator("tables")
    @classmethod
    def _known_columns(cls, tables: dict[str, TableMapping]) -> dict[str, TableMapping]:
        if not tables:
            raise ValueError("map at least one table")
        for name, tm in tables.items():
            if name not in TABLES:
                raise ValueError(f"unknown table {name!r}; contract tables: {', '.join(TABLES)}")
            contract = TABLES[name].columns
            targets = list(tm.columns.values())
            for where, cols in (("columns", targets), ("defaults", list(tm.defaults))):
                unknown = [c for c in cols if c not in contract]
                if unknown:
                    raise ValueError(
                        f"{name}.{where}: unknown contract column(s) {', '.join(unknown)}; "
                        f"{name} has {', '.join(contract)}"
                    )
            twice = sorted({c for c in targets if targets.count(c) > 1} | (set(targets) & set(tm.defaults)))
            if twice:
                raise ValueError(f"{name}: contract column(s) {', '.join(twice)} mapped more than once")
            if isinstance(tm.timestamp_format, dict):
                not_ts = [c for c in tm.timestamp_format if str(contract.get(c).dtype if c in contract else "") != TS]
                if not_ts:
                    raise ValueError(f"{name}.timestamp_format: {', '.join(not_ts)} is not a timestamp column")
            if tm.key_from_row and len(TABLES[name].key) != 1:
                raise ValueError(f"{name}.key_from_row: only for tables with a single-column key")
        return tables


def read_mapping(path: Path) -> Mapping:
    """A mapping file, validated; errors name the field."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SourceError(f"{path}: cannot read mapping file: {exc}") from exc
    try:
        return Mapping.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'mapping'}: {e['msg']}" for e in exc.errors())
        raise SourceError(f"{path}: invalid mapping: {problems}") from exc


def _read_file(file: Path, tm: TableMapping, limits: InputLimitsConfig) -> pd.DataFrame:
    if not file.is_file():
        raise SourceError(f"{file}: file not found")
    if file.suffix.lower() == ".parquet":
        return read_parquet_bounded(file, limits)
    plain = Path(file.stem) if file.suffix.lower() in (".gz", ".bz2", ".xz") else file  # data.tsv.gz is a .tsv
    sep = tm.separator or ("\t" if plain.suffix.lower() in (".tsv", ".tab") else ",")
    return read_delimited(file, limits, sep=sep, encoding=tm.encoding)


def load_mapped(
    mapping_path: Path, path: Path | None = None, limits: InputLimitsConfig = InputLimitsConfig()
) -> Loaded:
    """Contract-shaped tables from the files a mapping file names."""
    mapping = read_mapping(mapping_path)
    base = path if path is not None and path.is_dir() else mapping_path.parent
    tables, formats = {}, {}
    for name, tm in mapping.tables.items():
        if tm.file is None and (path is None or not path.is_file()):
            raise SourceError(f"{mapping_path}: tables.{name}.file is not set and --path is not a file")
        file = base / tm.file if tm.file else path
        raw = _read_file(file, tm, limits)
        absent = [c for c in tm.columns if c not in raw.columns]
        if absent:
            raise SourceError(
                f"{file}: column(s) {', '.join(absent)} named in tables.{name}.columns not found; "
                f"the file has {', '.join(map(str, raw.columns))}"
            )
        df = raw[list(tm.columns)].rename(columns=tm.columns).reset_index(drop=True)
        for column, value in tm.defaults.items():
            df[column] = value
        if tm.key_from_row:
            key = TABLES[name].key[0]
            df[key] = f"{file.stem}-" + pd.Series(range(1, len(df) + 1)).astype(str)
        ts_columns = [c for c, col in TABLES[name].columns.items() if str(col.dtype) == TS]
        fmt = tm.timestamp_format
        formats[name] = {c: (fmt.get(c, AUTO) if isinstance(fmt, dict) else fmt) for c in ts_columns}
        tables[name] = df
    return Loaded(tables, formats, origin=str(mapping_path))
