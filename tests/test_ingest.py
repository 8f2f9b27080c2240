"""Ingest: validation with quarantine, idempotent merges, the refusal threshold and mapping files."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from features.ingest.pipeline import IngestError, ingest_source
from patron.cli.data import data_app
from patron.config import Settings, load_settings

DATA = Path(__file__).parent / "data"
MAPPING = DATA / "mapped" / "mapping.yaml"
# order_id of each bad row in tests/data/mapped/orders.csv -> the field its reason must name
BAD_ROWS = {
    "O6": "event_id: missing",
    "O7": "ts: unparsable timestamp 'bad'",
    "O8": "quantity:",
    "O9": "type:",
    "O10": "event_id: duplicate key",
    "O11": "item_id: unknown",
    "O12": "customer_id: unknown",
    "O13": "quantity: not a number 'x'",
}


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("PATRON_HOME", str(tmp_path / "ws"))
    return load_settings()


def test_quarantine_loses_nothing_and_names_the_field(settings: Settings) -> None:
    report = ingest_source(settings, "csv", mapping=MAPPING, max_quarantine_share=0.9)
    events = report.tables["events"]
    assert (events.rows_read, events.accepted, events.quarantined) == (16, 8, 8)
    for table in report.tables.values():
        assert table.rows_read == table.accepted + table.quarantined
    written = pd.read_parquet(settings.tables_dir / "events.parquet")
    assert sorted(written["event_id"]) == [f"L0{i}" for i in range(1, 9)]
    assert written["ts"].dtype == "datetime64[ns]" and written["quantity"].dtype == "Int64"
    quarantined = pd.read_parquet(settings.quarantine_dir / "events.parquet")
    assert len(quarantined) == 8
    reasons = dict(zip(quarantined["order_id"], quarantined["reason"]))
    for order, expected in BAD_ROWS.items():
        assert reasons[order].startswith(expected), (order, reasons[order])
    assert quarantined.set_index("order_id").loc["O8", "quantity"] == "-2"  # original value kept as text
    assert events.reasons["ts: unparsable timestamp"] == 1
    assert "ts: unparsable timestamp" in report.summary()
    products = pd.read_parquet(settings.tables_dir / "products.parquet").set_index("item_id")
    assert products["in_stock"].to_dict() == {"P1": True, "P2": False, "P3": True}


def test_reingest_is_idempotent(settings: Settings) -> None:
    ingest_source(settings, "csv", mapping=MAPPING, max_quarantine_share=0.9)
    first = (settings.tables_dir / "events.parquet").read_bytes()
    again = ingest_source(settings, "csv", mapping=MAPPING, max_quarantine_share=0.9).tables["events"]
    assert (again.new, again.already_present, again.quarantined, again.total_rows) == (0, 8, 8, 8)
    assert len(pd.read_parquet(settings.tables_dir / "events.parquet")) == 8
    assert pd.read_parquet(settings.tables_dir / "events.parquet").equals(pd.read_parquet(io.BytesIO(first)))


def test_new_rows_merge_with_existing_ones(settings: Settings, tmp_path: Path) -> None:
    ingest_source(settings, "cdnow", path=DATA / "cdnow_sample.txt")
    more = tmp_path / "CDNOW_master.txt"
    more.write_text((DATA / "cdnow_sample.txt").read_text() + " 00004 19970105  1   10.00\n")
    events = ingest_source(settings, "cdnow", path=more).tables["events"]
    assert (events.new, events.already_present, events.total_rows) == (1, 5, 6)


def test_over_threshold_fails_and_keeps_previous_tables(settings: Settings) -> None:
    ingest_source(settings, "cdnow", path=DATA / "cdnow_sample.txt")
    before = {p.name: p.read_bytes() for p in settings.tables_dir.glob("*.parquet")}
    with pytest.raises(IngestError) as err:
        ingest_source(settings, "csv", mapping=MAPPING)
    message = str(err.value)
    assert "events: 8 of 16 rows quarantined" in message and "left unchanged" in message
    assert "event_id: missing" in message or "ts: unparsable timestamp" in message
    assert {p.name: p.read_bytes() for p in settings.tables_dir.glob("*.parquet")} == before
    assert len(pd.read_parquet(settings.quarantine_dir / "events.parquet")) == 8


def test_cli_exit_codes(settings: Settings) -> None:
    runner = CliRunner()
    failed = runner.invoke(data_app, ["ingest", "--source", "csv", "--mapping", str(MAPPING)])
    assert failed.exit_code == 1 and "ingest failed" in failed.output
    ok = runner.invoke(
        data_app, ["ingest", "--source", "csv", "--mapping", str(MAPPING), "--max-quarantine-share", "0.9"]
    )
    assert ok.exit_code == 0, ok.output
    assert "events: 16 read, 8 accepted (8 new, 0 already present), 8 quarantined" in ok.output


def _mapping(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mapping.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text, expected",
    [
        ("tables: {orders: {file: orders.csv}}", "unknown table 'orders'"),
        ("tables: {events: {file: o.csv, columns: {a: event_key}}}", "unknown contract column(s) event_key"),
        ("tables: {events: {file: o.csv, columns: {a: ts, b: ts}}}", "ts mapped more than once"),
        ("tables: {events: {file: o.csv, timestamp_format: {quantity: '%Y'}}}", "quantity is not a timestamp column"),
        ("tables: {events: {file: o.csv, colums: {}}}", "tables.events.colums"),
    ],
)
def test_mapping_errors_name_the_field(settings: Settings, tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(IngestError, match="invalid mapping") as err:
        ingest_source(settings, "csv", mapping=_mapping(tmp_path, text))
    assert expected in str(err.value)


def test_mapping_names_missing_source_columns_and_contract_columns(settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "o.csv").write_text("who,what,when\nC1,P1,2024-01-01\n")
    wrong = _mapping(tmp_path, "tables: {events: {file: o.csv, columns: {client: customer_id}}}")
    with pytest.raises(IngestError, match="column.s. client named in tables.events.columns not found"):
        ingest_source(settings, "csv", mapping=wrong)
    no_key = _mapping(
        tmp_path,
        "tables: {events: {file: o.csv, columns: {who: customer_id, what: item_id, when: ts},"
        " defaults: {type: purchase, quantity: 1, channel: store}}}",
    )
    with pytest.raises(IngestError, match="required column 'event_id' is missing"):
        ingest_source(settings, "csv", mapping=no_key)


def test_mapping_defaults_and_keys_from_rows(settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "o.csv").write_text("who,what,when\nC1,P1,2024-01-01\nC2,P1,2024-01-02 10:30\n")
    mapping = _mapping(
        tmp_path,
        "tables: {events: {file: o.csv, key_from_row: true,"
        " columns: {who: customer_id, what: item_id, when: ts},"
        " defaults: {type: purchase, quantity: 1, channel: store}}}",
    )
    report = ingest_source(settings, "csv", mapping=mapping)
    assert report.tables["events"].accepted == 2
    events = pd.read_parquet(settings.tables_dir / "events.parquet")
    assert list(events["event_id"]) == ["o-1", "o-2"]
    assert set(events["channel"]) == {"store"} and set(events["type"]) == {"purchase"}
    assert events["ts"].iloc[1] == pd.Timestamp("2024-01-02 10:30")
