"""The online store contract, run against both implementations: SQLite (WAL) and a real Redis."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import pytest
import redis

from serving.online.redis_store import RedisStore
from serving.online.sqlite_store import PURCHASED_ITEMS, SqliteStore
from serving.online.store import OnlineStore, cart_items, recent_categories

REDIS_URL = "redis://127.0.0.1:6379/0"


def event(n: int, customer: str = "c1", item: str = "i1", kind: str = "view", ts: str | None = None) -> dict:
    return {
        "event_id": f"e{n}",
        "customer_id": customer,
        "item_id": item,
        "type": kind,
        "ts": ts or (datetime(2026, 1, 1, 10) + timedelta(seconds=n)).strftime("%Y-%m-%dT%H:%M:%S.%f"),
        "quantity": 1,
        "unit_price": None,
        "channel": "online",
        "order_id": None,
    }


@pytest.fixture(params=["sqlite", "redis"])
def store(request, tmp_path) -> Iterator[OnlineStore]:
    if request.param == "sqlite":
        s = SqliteStore(tmp_path / "online.db")
    else:
        try:
            redis.Redis.from_url(REDIS_URL).ping()
        except redis.ConnectionError:
            pytest.fail(f"Redis is not reachable at {REDIS_URL}")
        s = RedisStore(REDIS_URL, prefix=f"patron-test-{uuid.uuid4().hex}")
    yield s
    s.clear()
    s.close()


def test_events_are_idempotent_by_event_id(store):
    assert store.record_events([event(1), event(2)]) == (2, 0)
    assert store.record_events([event(2), event(3), event(3)]) == (1, 2)
    assert [e["event_id"] for _, e in store.event_log()] == ["e1", "e2", "e3"]


def test_recent_events_are_the_customers_latest_first(store):
    store.record_events([event(n, customer="c1" if n % 2 else "c2", item=f"i{n}") for n in range(1, 9)])
    recent = store.recent_events("c1", 3)
    assert [e["item_id"] for e in recent] == ["i7", "i5", "i3"]
    assert recent[0] == event(7, item="i7")
    assert store.recent_events("nobody", 5) == []


def test_purchased_items_most_recent_first_each_once(store):
    store.record_events(
        [
            event(1, item="a", kind="purchase"),
            event(2, item="b", kind="purchase"),
            event(3, item="a", kind="purchase"),
            event(4, item="c", kind="cart"),
            event(5, customer="other", item="z", kind="purchase"),
        ]
    )
    assert store.purchased_items("c1") == ["a", "b"]
    assert store.purchased_items("other") == ["z"]


def test_cart_and_recent_categories_derive_from_recent_events(store):
    store.record_events(
        [
            event(1, item="a", kind="cart"),
            event(2, item="b", kind="cart"),
            event(3, item="a", kind="purchase"),
            event(4, item="c", kind="view"),
        ]
    )
    recent = store.recent_events("c1", 10)
    assert cart_items(recent) == ["b"]
    assert recent_categories(recent, {"a": "shoes", "b": "hats", "c": "shoes"}) == ["shoes", "hats"]


def test_stock_overrides_last_write_wins(store):
    assert store.stock_overrides() == {}
    store.set_stock({"a": False, "b": True})
    store.set_stock({"a": True})
    assert store.stock_overrides() == {"a": True, "b": True}


def test_event_log_pages_by_sequence_number(store):
    store.record_events([event(n) for n in range(1, 6)])
    first = store.event_log(limit=2)
    rest = store.event_log(after=first[-1][0])
    assert [e["event_id"] for _, e in first + rest] == ["e1", "e2", "e3", "e4", "e5"]
    assert store.event_log(after=rest[-1][0]) == []


def test_concurrent_writers_store_each_event_once(store):
    batches = [[event(n) for n in range(start, start + 20)] for start in range(0, 60, 10)]  # overlapping ids
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(store.record_events, batches))
    assert sum(a for a, _ in results) == 70
    assert sum(d for _, d in results) == 120 - 70
    assert len(store.event_log()) == 70


def ticket(n: int, customer: str = "c1", day: int = 1, category: str = "delivery") -> dict:
    return {
        "ticket_id": f"t{n}",
        "customer_id": customer,
        "opened_at": f"2026-01-{day:02d}T10:00:00.000000",
        "resolved_at": None,
        "category": category,
        "satisfaction": None,
    }


def test_signals_are_idempotent_by_contract_key_and_listed_per_customer_oldest_first(store):
    assert store.record_signals("tickets", [ticket(1, day=5), ticket(2, day=3)]) == ["t1", "t2"]
    assert store.record_signals("tickets", [ticket(2, day=3), ticket(3, customer="c2")]) == ["t3"]
    assert [t["ticket_id"] for t in store.customer_signals("tickets", "c1")] == ["t2", "t1"]
    assert store.customer_signals("tickets", "c1")[0] == ticket(2, day=3)
    survey = {"customer_id": "c1", "ts": "2026-01-02T00:00:00.000000", "nps": 3, "csat": None}
    assert store.record_signals("surveys", [survey, survey]) == ["c1|2026-01-02T00:00:00.000000"]
    assert store.customer_signals("surveys", "c1") == [survey]
    assert store.customer_signals("surveys", "c2") == []


def test_signal_log_pages_by_sequence_number_per_kind(store):
    store.record_signals("tickets", [ticket(n) for n in range(1, 5)])
    store.record_signals("surveys", [{"customer_id": "c1", "ts": "2026-01-02T00:00:00.000000", "nps": 9, "csat": 5}])
    first = store.signal_log("tickets", limit=3)
    rest = store.signal_log("tickets", after=first[-1][0])
    assert [t["ticket_id"] for _, t in first + rest] == ["t1", "t2", "t3", "t4"]
    assert [s["nps"] for _, s in store.signal_log("surveys")] == [9]
    store.clear()
    assert store.signal_log("tickets") == [] and store.customer_signals("tickets", "c1") == []


def test_sqlite_store_is_in_wal_mode_and_committed_for_another_connection(tmp_path):
    s = SqliteStore(tmp_path / "online.db")
    s.record_events([event(1, kind="purchase")])
    other = sqlite3.connect(tmp_path / "online.db")  # another process would see the same
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert other.execute("SELECT event_id FROM events").fetchall() == [("e1",)]
    other.close()
    s.close()


def test_sqlite_purchased_items_reads_only_an_index_for_a_customer_with_many_events(tmp_path):
    s = SqliteStore(tmp_path / "online.db")
    s.record_events(
        [event(n, customer="heavy", item=f"i{n % 40}", kind=("view", "purchase")[n % 2]) for n in range(2000)]
        + [event(5000, customer="other", item="i7", kind="purchase")]
    )
    items = s.purchased_items("heavy")
    assert items[0] == "i39" and len(items) == 20 == len(set(items))  # odd n bought; latest n=1999 -> i39
    plan = " ".join(str(r) for r in s._conn().execute("EXPLAIN QUERY PLAN " + PURCHASED_ITEMS, ("heavy",)))
    assert "COVERING INDEX purchases_by_customer" in plan, plan
    s.close()
