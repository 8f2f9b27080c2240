"""Live events: contract validation row by row, and their merge into the batch events table, each exactly once."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from features.tables.store import read_table
from serving.online.event_sync import checkpoint, sync_online_events
from serving.online.events import validate_events
from serving.online.sqlite_store import SqliteStore
from tests.conftest import small_workspace

ITEMS = {"i1", "i2"}


def row(**kw) -> dict:
    return {"event_id": "e1", "customer_id": "c1", "item_id": "i1", "ts": "2026-03-01T12:00:00", "type": "view", **kw}


def test_good_rows_get_contract_defaults_and_utc_timestamps():
    valid, rejected = validate_events(
        [
            row(),
            row(
                event_id="e2",
                ts="2026-03-01T12:00:00+02:00",
                type="purchase",
                quantity=3,
                unit_price=9.5,
                channel="app",
            ),
        ],
        ITEMS,
    )
    assert rejected == []
    assert valid[0] == {
        "event_id": "e1",
        "customer_id": "c1",
        "item_id": "i1",
        "ts": "2026-03-01T12:00:00.000000",
        "type": "view",
        "quantity": 1,
        "unit_price": None,
        "channel": "online",
        "order_id": None,
    }
    assert valid[1]["ts"] == "2026-03-01T10:00:00.000000" and valid[1]["quantity"] == 3


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        (row(type="like"), "type"),
        (row(channel="fax"), "channel"),
        (row(quantity=0), "quantity"),
        (row(unit_price=-1), "unit_price"),
        (row(ts="yesterday-ish"), "ts"),
        (row(event_id=""), "event_id"),
        (row(item_id="no-such-item"), "item_id"),
        (row(colour="red"), "colour"),
        ({k: v for k, v in row().items() if k != "customer_id"}, "customer_id"),
        ("not an object", "event"),
    ],
)
def test_a_bad_row_is_rejected_by_index_naming_the_field_and_the_good_rows_stay(bad, field):
    valid, rejected = validate_events([row(event_id="ok1"), bad, row(event_id="ok2")], ITEMS)
    assert [v["event_id"] for v in valid] == ["ok1", "ok2"]
    assert len(rejected) == 1 and rejected[0]["index"] == 1
    assert rejected[0]["reason"].startswith(field)


@pytest.fixture
def copied_workspace(ingested_workspace, tmp_path):
    ws = small_workspace(tmp_path)
    shutil.copytree(ingested_workspace.settings.tables_dir, ws.settings.tables_dir)
    return ws


def test_online_events_reach_the_events_table_exactly_once(copied_workspace):
    settings = copied_workspace.settings
    before = read_table(settings.tables_dir, "events")
    products = read_table(settings.tables_dir, "products")
    known = set(products["item_id"])
    item, other = sorted(known)[:2]
    old_customer = str(before["customer_id"].iloc[0])
    posted = [
        row(event_id="live-1", customer_id="brand-new", item_id=item, type="purchase", quantity=2),
        row(event_id="live-2", customer_id="brand-new", item_id=other, ts="2026-03-01T12:05:00"),
        row(event_id="live-3", customer_id=old_customer, item_id=item, type="cart"),
    ]
    valid, rejected = validate_events(posted, known)
    store = SqliteStore(settings.online_db)
    assert rejected == [] and store.record_events(valid + valid[:1]) == (3, 1)

    report = sync_online_events(settings, store)
    assert report.tables["events"].new == 3 and report.tables["events"].quarantined == 0
    after = read_table(settings.tables_dir, "events")
    assert len(after) == len(before) + 3
    live = after[after["event_id"].str.startswith("live-")].set_index("event_id")
    assert live.loc["live-1", "customer_id"] == "brand-new" and live.loc["live-1", "quantity"] == 2
    assert live.loc["live-2", "ts"] == pd.Timestamp("2026-03-01 12:05:00")
    customers = read_table(settings.tables_dir, "customers")
    assert customers["customer_id"].value_counts()[["brand-new", old_customer]].tolist() == [1, 1]
    assert checkpoint(settings) > 0

    assert sync_online_events(settings, store) is None  # nothing new since the checkpoint
    store.record_events(validate_events([row(event_id="live-4", customer_id="brand-new", item_id=item)], known)[0])
    (settings.workspace / "online_ingested.json").unlink()  # a lost checkpoint replays the whole log...
    replay = sync_online_events(settings, store)
    assert replay.tables["events"].new == 1 and replay.tables["events"].already_present == 3  # ...merged once
    assert len(read_table(settings.tables_dir, "events")) == len(before) + 4
    store.close()
