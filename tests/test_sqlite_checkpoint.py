"""The SQLite online store's background checkpoint: commits never checkpoint, the log stays bounded, nothing is lost."""

from __future__ import annotations

import sqlite3
import time

from serving.online.sqlite_store import SqliteStore


def _events(batch: int, n: int = 10) -> list[dict]:
    return [
        {
            "event_id": f"e{batch}-{j}",
            "customer_id": f"c{j % 3}",
            "item_id": f"i{(batch + j) % 50}",
            "ts": f"2026-06-01T12:00:{batch % 60:02d}.000000",
            "type": "view",
        }
        for j in range(n)
    ]


def test_log_stays_bounded_and_every_event_is_kept(tmp_path) -> None:
    store = SqliteStore(tmp_path / "online.db", checkpoint_s=0.01, wal_restart_mb=0.25)
    try:
        assert store._conn().execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0  # commits never checkpoint
        biggest = 0
        for batch in range(300):  # steady writes, no pause long enough for a non-blocking checkpoint to catch up
            assert store.record_events(_events(batch)) == (10, 0)
            biggest = max(biggest, (tmp_path / "online.db-wal").stat().st_size)
            time.sleep(0.001)
        assert store.record_events(_events(0)) == (0, 10)  # idempotent as before
    finally:
        store.close()
    assert biggest < 4 * 2**20  # ~8 MB of log without the restarts (300 commits of ~7 pages)
    with sqlite3.connect(tmp_path / "online.db") as conn:  # a fresh reader sees every committed event
        assert conn.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 3000


def test_without_background_checkpoint_sqlite_checkpoints_itself(tmp_path) -> None:
    store = SqliteStore(tmp_path / "online.db")
    try:
        assert store._conn().execute("PRAGMA wal_autocheckpoint").fetchone()[0] > 0
        assert store.record_events(_events(1)) == (10, 0)
    finally:
        store.close()
