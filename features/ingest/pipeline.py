"""Ingest: read a source, coerce it to contract types, validate with pandera, quarantine bad rows, merge, write."""

from __future__ import annotations

import ast
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from pandera.errors import SchemaErrors

from features.ingest.bounded_read import SourceError
from features.ingest.raw_tables import AUTO, Loaded, parse_timestamps
from features.ingest.sources import load_source
from features.privacy.erasure import drop_erased, erased_keys
from features.tables.contract import INGEST_ORDER, TABLES, TS
from features.tables.store import read_table, write_parquet, write_tables
from patron.config import Settings
from patron.progress import bar

TRUE = {"true", "t", "yes", "y", "1"}
FALSE = {"false", "f", "no", "n", "0"}


class IngestError(RuntimeError):
    """The ingest was refused (too many bad rows, unreadable source or mapping); workspace tables are unchanged."""


@dataclass
class TableReport:
    """What happened to one table's rows."""

    table: str
    rows_read: int = 0
    accepted: int = 0  # passed validation (new + already present)
    new: int = 0  # written to the workspace table
    already_present: int = 0  # key already in the workspace table: existing row kept
    quarantined: int = 0
    reasons: Counter = field(default_factory=Counter)  # rule -> rows
    total_rows: int = 0  # rows in the workspace table after the ingest

    @property
    def quarantine_share(self) -> float:
        return self.quarantined / self.rows_read if self.rows_read else 0.0

    def line(self) -> str:
        """One-line account of this table."""
        text = (
            f"{self.table}: {self.rows_read} read, {self.accepted} accepted ({self.new} new, "
            f"{self.already_present} already present), {self.quarantined} quarantined"
        )
        if self.reasons:
            text += "\n" + "\n".join(f"    {count:>8}  {rule}" for rule, count in self.reasons.most_common())
        return text


@dataclass
class IngestReport:
    """Outcome of one ingest run."""

    source: str
    origin: str
    tables: dict[str, TableReport]
    seconds: float = 0.0

    def summary(self) -> str:
        """Human-readable summary: rows read, accepted, already present and quarantined by reason, per table."""
        head = f"ingested {self.source} from {self.origin} in {self.seconds:.1f}s"
        return "\n".join([head, *(r.line() for r in self.tables.values())])


def rule_of(reason: str) -> str:
    """A reason without its quoted value, for counting reasons by kind."""
    return re.sub(r"(, got)? '[^']*'", "", reason).strip()


def _coerce(name: str, df: pd.DataFrame, formats: dict[str, str]) -> tuple[pd.DataFrame, dict[int, list[str]]]:
    """Contract types for each column; values that cannot be read are reported per row and left missing."""
    out, reasons = pd.DataFrame(index=df.index), {}
    for column, spec in TABLES[name].columns.items():
        if column not in df.columns:
            if not spec.required:
                continue
            if not spec.nullable:
                raise IngestError(
                    f"{name}: required column {column!r} is missing (map a source column or set a default)"
                )
            out[column] = None
            continue
        raw = df[column]
        present = raw.notna() & (raw.astype(str).str.strip() != "")
        dtype = str(spec.dtype)
        if dtype == TS:
            values, what = parse_timestamps(raw, formats.get(column, AUTO)), "unparsable timestamp"
        elif dtype in ("float64", "Int64"):
            values, what = pd.to_numeric(raw, errors="coerce"), "not a number"
            if dtype == "Int64":
                whole = values.isna() | (values % 1 == 0)
                values, what = values.where(whole), "not a whole number" if (~whole).any() else what
        elif dtype == "bool":
            if pd.api.types.is_bool_dtype(raw):
                values = raw
            else:
                text = raw.astype(str).str.strip().str.lower()
                values = text.map(lambda v: True if v in TRUE else False if v in FALSE else None)
            what = "not a boolean"
        else:
            values, what = raw.where(raw.isna(), raw.astype(str)), ""
        if what:
            for idx in raw.index[present & values.isna()]:
                reasons.setdefault(idx, []).append(f"{column}: {what} {str(raw[idx])!r}")
        out[column] = values
    return out, reasons


def _describe(column: str, check: str, value: object) -> str:
    """A human-readable reason from a pandera failure case."""
    shown = repr(str(value))
    if check == "not_nullable" or check.startswith("str_length(1"):
        return f"{column}: missing"
    if "uniqueness" in check or check == "unique":
        return f"{column}: duplicate key, got {shown}"
    if check.startswith("isin("):
        allowed = ", ".join(map(str, ast.literal_eval(check[5:-1])))
        return f"{column}: not an allowed value (allowed: {allowed}), got {shown}"
    if m := re.match(r"greater_than_or_equal_to\((.*)\)", check):
        return f"{column}: below the minimum {m.group(1)}, got {shown}"
    if m := re.match(r"in_range\((.*), (.*)\)", check):
        return f"{column}: outside {m.group(1)}..{m.group(2)}, got {shown}"
    if check.startswith("unknown "):
        return f"{column}: {check}, got {shown}"
    return f"{column}: fails {check}, got {shown}"


def _validate(
    name: str, df: pd.DataFrame, known: dict[str, set[str]], passes: int, reasons: dict[int, list[str]]
) -> pd.DataFrame:
    """Rows that pass the contract; failing rows' reasons are added to `reasons` (re-validated until clean)."""
    schema = TABLES[name].schema(known)
    pending = df
    for _ in range(passes):
        try:
            return schema.validate(pending, lazy=True)
        except SchemaErrors as exc:
            cases = exc.failure_cases
            rows = cases[cases["index"].notna()]
            if rows.empty:
                problems = "; ".join(f"{c.column}: {c.check} ({c.failure_case})" for c in cases.itertuples())
                raise IngestError(f"{name}: the table does not fit the contract: {problems}") from exc
            for case in rows.itertuples():
                reasons.setdefault(int(case.index), []).append(
                    _describe(str(case.column), str(case.check), case.failure_case)
                )
            pending = pending.drop(index=sorted({int(i) for i in rows["index"]}))
    raise IngestError(f"{name}: still failing validation after {passes} passes")


def _originals(df: pd.DataFrame, reasons: dict[int, list[str]]) -> pd.DataFrame:
    """Quarantined rows: original values as strings, the row number in the source table and the reason."""
    bad = df.loc[sorted(reasons)]
    text = bad.astype(object).map(
        lambda v: None if v is None or (not isinstance(v, (list, dict)) and pd.isna(v)) else str(v)
    )
    text.insert(0, "reason", ["; ".join(dict.fromkeys(reasons[i])) for i in bad.index])
    text.insert(0, "source_row", bad.index.astype("int64"))
    return text.reset_index(drop=True)


def _present(new: pd.DataFrame, existing: pd.DataFrame | None, key: tuple[str, ...]) -> pd.Series:
    """Which new rows have a key already in the workspace table."""
    if existing is None or existing.empty:
        return pd.Series(False, index=new.index)
    if len(key) == 1:
        # object dtype: hashtable lookups, much faster than Arrow-backed string isin on large tables
        return new[key[0]].astype(object).isin(existing[key[0]].astype(object))
    return pd.Series(
        pd.MultiIndex.from_frame(new[list(key)]).isin(pd.MultiIndex.from_frame(existing[list(key)])), index=new.index
    )


def _keys(df: pd.DataFrame | None, key: tuple[str, ...]) -> set[str]:
    return set() if df is None else set(df[key[0]].astype(str))


def _drop_erased(settings: Settings, loaded: Loaded) -> None:
    """Leave out the rows of customers in the erasure log, valid or not: an erased customer never comes back."""
    keys = erased_keys(settings)
    if keys:
        loaded.tables = {name: drop_erased(settings, df, keys) for name, df in loaded.tables.items()}
        loaded.rejected = {name: drop_erased(settings, df, keys) for name, df in loaded.rejected.items()}


def ingest_source(
    settings: Settings,
    source: str,
    path: Path | None = None,
    mapping: Path | None = None,
    max_quarantine_share: float | None = None,
) -> IngestReport:
    """Read a source, validate it against the contract and merge it into the workspace tables (bad rows quarantined)."""
    started = time.perf_counter()
    limit = settings.ingest.max_quarantine_share if max_quarantine_share is None else max_quarantine_share
    try:
        loaded: Loaded = load_source(source, settings, path=path, mapping=mapping)
    except SourceError as exc:
        raise IngestError(str(exc)) from exc
    _drop_erased(settings, loaded)
    reports, merged, quarantine, known = {}, {}, {}, {}
    for name in bar(INGEST_ORDER, desc="ingest", unit="table"):
        table = TABLES[name]
        existing = read_table(settings.tables_dir, name)
        if name not in loaded.tables:
            if existing is not None and len(table.key) == 1:
                known[name] = _keys(existing, table.key)
            continue
        df = loaded.tables[name].reset_index(drop=True)
        report = reports[name] = TableReport(name)
        coerced, reasons = _coerce(name, df, loaded.timestamp_formats.get(name, {}))
        refs = {t: known[t] for t in table.references.values() if t in known}
        valid = _validate(name, coerced.drop(index=list(reasons)), refs, settings.ingest.max_validation_passes, reasons)
        bad = _originals(df, reasons) if reasons else pd.DataFrame(columns=["source_row", "reason", *df.columns])
        rejected = loaded.rejected.get(name)
        if rejected is not None and len(rejected):
            bad = pd.concat(
                [bad, _originals(rejected.drop(columns="reason"), {i: [r] for i, r in rejected["reason"].items()})],
                ignore_index=True,
            )
        present = _present(valid, existing, table.key)
        fresh = valid[~present]
        report.rows_read = len(df) + (0 if rejected is None else len(rejected))
        report.accepted, report.already_present, report.new = len(valid), int(present.sum()), len(fresh)
        report.quarantined = len(bad)
        report.reasons = Counter(rule for r in bad["reason"] for rule in dict.fromkeys(map(rule_of, r.split("; "))))
        merged[name] = fresh if existing is None else pd.concat([existing, fresh], ignore_index=True)
        report.total_rows = len(merged[name])
        quarantine[name] = bad
        if len(table.key) == 1:
            known[name] = _keys(merged[name], table.key)

    try:
        for name, bad in quarantine.items():  # written whether or not the ingest is accepted
            write_parquet(bad.astype(object).astype("string"), settings.quarantine_dir / f"{name}.parquet")
    except OSError as exc:
        raise IngestError(
            f"could not write the quarantine to {settings.quarantine_dir}: {exc}; workspace tables left unchanged"
        ) from exc
    over = [r for r in reports.values() if r.quarantine_share > limit]
    if over:
        lines = [
            f"{r.table}: {r.quarantined} of {r.rows_read} rows quarantined ({r.quarantine_share:.1%} > "
            f"{limit:.1%}); top reasons: " + ", ".join(f"{rule} ({n})" for rule, n in r.reasons.most_common(3))
            for r in over
        ]
        raise IngestError(
            "; ".join(lines) + f". Quarantine written to {settings.quarantine_dir}; workspace tables left unchanged."
        )
    try:
        write_tables(merged, settings.tables_dir)
    except OSError as exc:  # e.g. the disk is full: no table was replaced
        raise IngestError(
            f"could not write the workspace tables to {settings.tables_dir}: {exc}; workspace tables left unchanged"
        ) from exc
    return IngestReport(source, loaded.origin, reports, time.perf_counter() - started)
