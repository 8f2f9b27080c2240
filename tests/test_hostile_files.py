"""Hostile input files: huge fields, wrong encodings, binary junk, decompression bombs and row-count claims are
refused or quarantined with errors naming the file, line or field; formula-like text is escaped in every CSV written."""

from __future__ import annotations

import gzip
from pathlib import Path

import pandas as pd
import pytest

from features.ingest.bounded_read import SourceError, read_delimited, read_parquet_bounded
from features.ingest.pipeline import IngestError, ingest_source
from features.tables.export import write_csv_or_parquet
from features.tables.safe_csv import escape_formulas
from patron.config import Settings, load_settings

PRODUCTS = (
    "tables: {products: {file: FILE, columns: {id: item_id, name: name, cat: category}, "
    "defaults: {in_stock: true}ENCODING}}"
)
HOSTILE = ["=cmd|' /C calc'!A0", "+SUM(1,2)", "-2+3", "@SUM(A1:A2)", "\t=1", "\r=1"]


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("PATRON_HOME", str(tmp_path / "ws"))
    return load_settings(
        input_limits={"max_file_bytes": 1_000_000, "max_rows": 1_000, "max_field_chars": 100, "chunk_rows": 50}
    )


def _mapping(tmp_path: Path, file: str, encoding: str | None = None) -> Path:
    path = tmp_path / "mapping.yaml"
    path.write_text(PRODUCTS.replace("FILE", file).replace("ENCODING", f", encoding: {encoding}" if encoding else ""))
    return path


def _products_csv(names: list[str]) -> str:
    return "id,name,cat\n" + "".join(f"P{i},{n},food\n" for i, n in enumerate(names))


def test_a_huge_field_quarantines_its_row_naming_the_field_and_cuts_the_value(
    settings: Settings, tmp_path: Path
) -> None:
    (tmp_path / "p.csv").write_text(_products_csv(["Tea", "x" * 5_000, "Jam"]))
    report = ingest_source(settings, "csv", mapping=_mapping(tmp_path, "p.csv"), max_quarantine_share=0.5)
    assert report.tables["products"].accepted == 2 and report.tables["products"].quarantined == 1
    quarantine = pd.read_parquet(settings.quarantine_dir / "products.parquet")
    assert quarantine["reason"].tolist() == [
        "name: longer than 100 characters (input_limits.max_field_chars), got 5000"
    ]
    assert len(quarantine["name"].iloc[0]) == 103 and quarantine["name"].iloc[0].endswith("...")
    assert sorted(pd.read_parquet(settings.tables_dir / "products.parquet")["name"]) == ["Jam", "Tea"]


def test_a_latin1_file_read_as_utf8_is_refused_naming_the_file_line_and_encoding(
    settings: Settings, tmp_path: Path
) -> None:
    (tmp_path / "p.csv").write_bytes(_products_csv(["Tea", "Crème brûlée"]).encode("latin-1"))
    with pytest.raises(
        IngestError,
        match=r"p\.csv: not valid utf-8 text \(line 3, byte 0xe8 at column 6\); "
        r"give the file's encoding \(e\.g\. `encoding: latin-1`",
    ):
        ingest_source(settings, "csv", mapping=_mapping(tmp_path, "p.csv"))
    assert not (settings.tables_dir / "products.parquet").exists()
    ingest_source(settings, "csv", mapping=_mapping(tmp_path, "p.csv", "latin-1"))  # the encoding the error named
    names = pd.read_parquet(settings.tables_dir / "products.parquet")["name"].tolist()
    assert names == ["Tea", "Crème brûlée"]


def test_utf16_with_a_byte_order_mark_is_read_as_such(settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "p.csv").write_bytes(_products_csv(["Tea", "Çay"]).encode("utf-16"))
    ingest_source(settings, "csv", mapping=_mapping(tmp_path, "p.csv"))
    assert pd.read_parquet(settings.tables_dir / "products.parquet")["name"].tolist() == ["Tea", "Çay"]


def test_binary_junk_is_refused_as_binary(settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "p.csv").write_bytes(b"id,name,cat\nP1,\x00\x01\x02\xff\xfe,food\n")
    with pytest.raises(IngestError, match=r"p\.csv: binary content \(a NUL byte at offset 15\)"):
        ingest_source(settings, "csv", mapping=_mapping(tmp_path, "p.csv"))


def test_a_decompression_bomb_stops_at_the_byte_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATRON_HOME", str(tmp_path / "ws"))
    settings = load_settings(input_limits={"max_file_bytes": 1_000_000})  # the rows limit would stop it first
    bomb = tmp_path / "p.csv.gz"
    with gzip.open(bomb, "wb") as fh:  # 40 MB of rows, about 100 KB compressed
        fh.write(b"id,name,cat\n")
        fh.write(b"P1,Tea,food\n" * 3_500_000)
    assert bomb.stat().st_size < 300_000
    with pytest.raises(
        IngestError,
        match=r"p\.csv\.gz: more than 1000000 bytes \(after decompression\); "
        r"raise input_limits\.max_file_bytes",
    ):
        ingest_source(settings, "csv", mapping=_mapping(tmp_path, "p.csv.gz"))


def test_more_rows_than_the_limit_are_refused_while_reading(settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "p.csv").write_text(_products_csv([f"item {i}" for i in range(1_200)]))
    with pytest.raises(SourceError, match=r"p\.csv: more than 1000 rows; raise input_limits\.max_rows"):
        read_delimited(tmp_path / "p.csv", settings.input_limits)
    small = read_delimited(tmp_path / "p.csv", settings.input_limits.model_copy(update={"max_rows": 2_000}))
    assert len(small) == 1_200  # read in chunks of 50 rows, whole


def test_a_parquet_file_claiming_too_many_rows_is_refused_before_reading(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "events.parquet"
    pd.DataFrame({"event_id": [f"e{i}" for i in range(5_000)]}).to_parquet(path)
    with pytest.raises(
        SourceError,
        match=r"events\.parquet: claims 5000 rows, more than input_limits\.max_rows "
        r"\(1000\)",
    ):
        read_parquet_bounded(path, settings.input_limits)


def test_formula_like_text_is_escaped_and_numbers_are_not(tmp_path: Path) -> None:
    df = pd.DataFrame(
        {
            "customer_id": HOSTILE + ["C1"],
            "score": [-1.5, 2.0, -3.0, 4.0, 5.0, 6.0, -7.0],
            "reason": ["because you bought =HYPERLINK(x)"] * 7,
        }
    )
    path = write_csv_or_parquet(df, tmp_path / "scores.csv")
    back = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert back["customer_id"].tolist() == ["'" + v for v in HOSTILE] + ["C1"]
    assert back["score"].tolist() == ["-1.5", "2.0", "-3.0", "4.0", "5.0", "6.0", "-7.0"]
    assert set(back["reason"]) == {"because you bought =HYPERLINK(x)"}  # not at the start of the cell: inert
    assert escape_formulas(escape_formulas(df)).equals(escape_formulas(df))  # escaping twice changes nothing


@pytest.mark.integration
def test_batch_outputs_escape_hostile_customer_ids(trained_workspace, tmp_path: Path) -> None:
    from serving.batch.churn import score_churn
    from serving.batch.recommend import recommend_batch

    settings = trained_workspace.settings
    out = recommend_batch(settings, tmp_path / "recs.csv", k=2, customers=HOSTILE[:4]).path
    ids = pd.read_csv(out, dtype=str)["customer_id"].unique().tolist()
    assert sorted(ids) == sorted("'" + v for v in HOSTILE[:4])
    scores = score_churn(settings, tmp_path / "scores.csv", progress=False).path
    text = scores.read_text()
    assert not any(line.startswith(("=", "+", "-", "@")) for line in text.splitlines())
