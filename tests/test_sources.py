"""Real-data readers (CDNOW, MovieLens-100K, Online Retail II, synthetic) and `patron data get`."""

from __future__ import annotations

import io
import os
import urllib.error
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

import features.ingest.download as download
from features.ingest.pipeline import ingest_source
from patron.cli.data import data_app
from patron.config import Settings, load_settings

DATA = Path(__file__).parent / "data"


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("PATRON_HOME", str(tmp_path / "ws"))
    monkeypatch.setenv(download.CACHE_ENV, str(tmp_path / "cache"))
    return load_settings()


def _table(settings: Settings, name: str) -> pd.DataFrame:
    return pd.read_parquet(settings.tables_dir / f"{name}.parquet")


def test_cdnow_every_line_is_a_purchase(settings: Settings) -> None:
    report = ingest_source(settings, "cdnow", path=DATA / "cdnow_sample.txt")
    assert report.tables["events"].accepted == 5 and report.tables["events"].quarantined == 0
    events = _table(settings, "events").set_index("event_id")
    # lines 3 and 4 are byte-identical: two purchases, not a duplicate
    assert list(events.index) == [f"cdnow-{i}" for i in range(1, 6)]
    assert events.loc["cdnow-3", "unit_price"] == pytest.approx(15.4) and events.loc["cdnow-4", "quantity"] == 5
    assert events.loc["cdnow-5", "unit_price"] == 0.0  # zero-value line kept as a free purchase
    assert set(events["item_id"]) == {"cdnow"} and set(events["type"]) == {"purchase"}
    customers = _table(settings, "customers").set_index("customer_id")
    assert customers.loc["00002", "signup_date"] == pd.Timestamp("1997-01-12") and len(customers) == 3


def test_ml100k_original_layout(settings: Settings) -> None:
    report = ingest_source(settings, "ml100k", path=DATA / "ml100k_original", max_quarantine_share=0.5)
    events = report.tables["events"]
    assert (events.rows_read, events.accepted, events.quarantined) == (5, 4, 1)
    assert "rating: not an interaction (ratings >= 1 are), got '0'" in set(
        pd.read_parquet(settings.quarantine_dir / "events.parquet")["reason"]
    )
    written = _table(settings, "events").set_index("event_id")
    assert written.loc["ml100k-196-242-881250949", "ts"] == pd.Timestamp("1997-12-04 15:55:49")
    assert set(written["quantity"]) == {1} and set(written["type"]) == {"purchase"}
    products = _table(settings, "products").set_index("item_id")
    assert products.loc["51", "category"] == "Drama" and products.loc["242", "category"] == "Comedy"
    assert products.loc["242", "launched_at"] == pd.Timestamp("1997-01-24")


def test_ml100k_recbole_layout_gives_the_same_events(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ingest_source(settings, "ml100k", path=DATA / "ml100k_recbole")
    recbole = _table(settings, "events").set_index("event_id")
    assert len(recbole) == 3
    assert _table(settings, "products").set_index("item_id").loc["302", "category"] == "Crime"
    monkeypatch.setenv("PATRON_HOME", str(tmp_path / "other"))
    original_settings = load_settings()
    ingest_source(original_settings, "ml100k", path=DATA / "ml100k_original", max_quarantine_share=0.5)
    original = _table(original_settings, "events").set_index("event_id")
    assert recbole.equals(original.loc[recbole.index])


def test_online_retail_returns_and_missing_customers(settings: Settings) -> None:
    report = ingest_source(settings, "online-retail", path=DATA / "online_retail_sample.csv", max_quarantine_share=0.1)
    assert report.tables["events"].quarantined == 1
    quarantined = pd.read_parquet(settings.quarantine_dir / "events.parquet")
    assert list(quarantined["reason"]) == ["customer_id: missing"] and list(quarantined["order_id"]) == ["489437"]
    events = _table(settings, "events").set_index("event_id")
    assert len(events) == 11
    returns = events[events["type"] == "return"]
    assert sorted(returns.index) == ["C489449-1", "C489449-2"] and sorted(returns["quantity"]) == [1, 12]
    assert set(events["customer_id"]) == {"13085", "13078", "16321", "12682"}
    products = _table(settings, "products").set_index("item_id")
    assert products.loc["POST", "category"] == "non_product" and products.loc["22350", "category"] == "merchandise"
    assert products.loc["22350", "name"] == "CAT BOWL" and products.loc["22350", "unit_price"] == 2.55
    customers = _table(settings, "customers").set_index("customer_id")
    assert customers.loc["16321", "region"] == "Australia"
    assert customers.loc["13085", "signup_date"] == pd.Timestamp("2009-12-01 07:45:00")


def test_synthetic_folder_is_read_as_is(settings: Settings) -> None:
    folder = settings.raw_dir / "synthetic"
    folder.mkdir(parents=True)
    pd.DataFrame({"customer_id": ["a", "b"], "signup_date": pd.to_datetime(["2025-01-01", "2025-01-02"])}).to_parquet(
        folder / "customers.parquet"
    )
    pd.DataFrame(
        {
            "event_id": ["e1", "e2"],
            "customer_id": ["a", "b"],
            "item_id": ["i1", "i2"],
            "ts": pd.to_datetime(["2025-01-03", "2025-01-04"]),
            "type": ["view", "purchase"],
            "quantity": pd.array([1, 2], dtype="Int64"),
            "unit_price": [1.0, 2.0],
            "channel": ["app", "store"],
            "order_id": [None, "o1"],
        }
    ).to_parquet(folder / "events.parquet")
    report = ingest_source(settings, "synthetic")
    assert report.tables["events"].accepted == 2 and report.tables["customers"].accepted == 2
    assert list(_table(settings, "events")["channel"]) == ["app", "store"]


def _unreachable(*_args, **_kwargs) -> bytes:
    raise urllib.error.URLError("offline")


def test_wheel_with_a_wrong_checksum_is_refused(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(download, "_fetch_official", _unreachable)
    wheels = Path(os.environ[download.CACHE_ENV]) / "wheels"
    wheels.mkdir(parents=True)
    with zipfile.ZipFile(wheels / "Lifetimes-0.11.3-py3-none-any.whl", "w") as whl:
        whl.writestr("lifetimes/datasets/CDNOW_master.txt", (DATA / "cdnow_sample.txt").read_bytes())
    messages: list[str] = []
    with pytest.raises(download.DownloadError, match="checksum mismatch for CDNOW_master.txt"):
        download.get_dataset("cdnow", settings, echo=messages.append)
    assert any("unreachable" in m for m in messages) and any("cached wheel" in m for m in messages)
    assert not (settings.raw_dir / "cdnow" / "CDNOW_master.txt").exists()


def test_official_archive_with_a_wrong_checksum_is_refused(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("ml-100k/u.data", (DATA / "ml100k_original" / "u.data").read_bytes())
    monkeypatch.setattr(download, "_fetch_official", lambda *_: buffer.getvalue())
    with pytest.raises(download.DownloadError, match="checksum mismatch for u.data from https://files.grouplens"):
        download.get_dataset("ml100k", settings, echo=lambda _: None)
    assert not (settings.raw_dir / "ml100k").exists()


def test_unknown_dataset(settings: Settings) -> None:
    with pytest.raises(download.DownloadError, match="unknown dataset 'imdb'"):
        download.get_dataset("imdb", settings)


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Wheel cache for the whole session ($PATRON_CACHE when set), so the suite downloads each wheel once."""
    return os.environ.get(download.CACHE_ENV) or str(tmp_path_factory.mktemp("patron-cache"))


@pytest.mark.integration
@pytest.mark.parametrize(
    "dataset, customers, items, events",
    [
        ("cdnow", 23_570, 1, 69_659),
        ("ml100k", 943, 1_682, 100_000),
    ],
)
def test_get_and_ingest_public_datasets(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    shared_cache: str,
    dataset: str,
    customers: int,
    items: int,
    events: int,
) -> None:
    monkeypatch.setenv("PATRON_HOME", str(tmp_path / "ws"))
    monkeypatch.setenv(download.CACHE_ENV, shared_cache)
    runner = CliRunner()
    got = runner.invoke(data_app, ["get", dataset])
    assert got.exit_code == 0, got.output
    assert "sha256" in got.output and ("PyPI wheel" in got.output or "https://" in got.output)
    ingested = runner.invoke(data_app, ["ingest", "--source", dataset])
    assert ingested.exit_code == 0, ingested.output
    settings = load_settings()
    table = _table(settings, "events")
    assert len(table) == events and table["event_id"].is_unique
    assert table["customer_id"].nunique() == customers == len(_table(settings, "customers"))
    assert table["item_id"].nunique() == items == len(_table(settings, "products"))
    assert len(pd.read_parquet(settings.quarantine_dir / "events.parquet")) == 0
