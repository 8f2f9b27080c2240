"""The embedded online store: one SQLite database in WAL mode, shared by every worker process on the host."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from pathlib import Path

from serving.online.store import EVENT_FIELDS, SIGNAL_FIELDS, SIGNAL_TIME, Event, Signal, signal_key

logger = logging.getLogger("bentoml.patron")

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    customer_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    ts TEXT NOT NULL,
    type TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_customer ON events (customer_id, ts);
-- purchased_items reads only this index: a customer with thousands of live events costs ~0.5 ms, not ~5 ms.
CREATE INDEX IF NOT EXISTS purchases_by_customer ON events (customer_id, type, item_id, ts);
CREATE TABLE IF NOT EXISTS stock (item_id TEXT PRIMARY KEY, in_stock INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS signals (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    ts TEXT NOT NULL,
    body TEXT NOT NULL,
    UNIQUE (kind, key)
);
CREATE INDEX IF NOT EXISTS signals_by_customer ON signals (kind, customer_id, ts);
CREATE TABLE IF NOT EXISTS erased (key TEXT PRIMARY KEY);
"""
PURCHASED_ITEMS = (
    "SELECT item_id FROM events WHERE customer_id = ? AND type = 'purchase' GROUP BY item_id ORDER BY MAX(ts) DESC"
)


class SqliteStore:
    """OnlineStore on SQLite: one connection per thread, every write committed before it returns.

    With `checkpoint_s` > 0 a background thread copies the write-ahead log into the database every `checkpoint_s`
    seconds without blocking anyone, instead of SQLite doing it inside whichever commit fills the log (10-20 ms
    added to that request, one commit in fifty at 10 events each). Under steady writes such a checkpoint never
    catches up with the end of the log, so the log only starts over after a blocking one, run when it passes
    `wal_restart_mb` (the few frames written since the last copy). A commit is as durable either way: it is in
    the log before it returns."""

    def __init__(
        self,
        path: Path,
        synchronous: str = "NORMAL",
        busy_timeout_ms: int = 5000,
        checkpoint_s: float = 0.0,
        wal_restart_mb: float = 32.0,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._synchronous = synchronous
        self._busy_timeout_ms = busy_timeout_ms
        self._checkpoint_s = checkpoint_s
        self._wal_restart_bytes = wal_restart_mb * 2**20
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._stop = threading.Event()
        with self._conn() as conn:
            conn.executescript(SCHEMA)
        if checkpoint_s > 0:
            threading.Thread(target=self._checkpoint_loop, name="sqlite-checkpoint", daemon=True).start()

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=self._busy_timeout_ms / 1000, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            if self._checkpoint_s > 0:
                conn.execute("PRAGMA wal_autocheckpoint=0")  # the background thread checkpoints
            self._local.conn = conn
            self._all.append(conn)
        return conn

    def _checkpoint_loop(self) -> None:
        """Checkpoint the log every `checkpoint_s`; restart it when it grew past `wal_restart_mb`."""
        # Its own connection without a busy timeout: a RESTART that would wait gives up and is tried next time.
        conn = sqlite3.connect(self.path, timeout=0, check_same_thread=False)
        try:
            page = conn.execute("PRAGMA page_size").fetchone()[0]
            while not self._stop.wait(self._checkpoint_s):
                try:
                    _, frames, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    if frames * page > self._wal_restart_bytes:
                        conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
                except sqlite3.Error as exc:
                    logger.warning("online store checkpoint failed (retried): %s", exc)
        finally:
            conn.close()

    def record_events(self, events: list[Event]) -> tuple[int, int]:
        """Insert the events in one transaction; event ids already stored are counted as duplicates."""
        rows = [
            (
                e["event_id"],
                e["customer_id"],
                e["item_id"],
                e["ts"],
                e["type"],
                json.dumps({k: e.get(k) for k in EVENT_FIELDS}),
            )
            for e in events
        ]
        conn = self._conn()
        with conn:  # commits (durable per `synchronous`) before returning, rolls back on error
            before = conn.total_changes
            conn.executemany(
                "INSERT OR IGNORE INTO events (event_id, customer_id, item_id, ts, type, body) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
            accepted = conn.total_changes - before
        return accepted, len(rows) - accepted

    def recent_events(self, customer_id: str, n: int) -> list[Event]:
        """The customer's latest n events, most recent first."""
        cur = self._conn().execute(
            "SELECT body FROM events WHERE customer_id = ? ORDER BY ts DESC, seq DESC LIMIT ?", (customer_id, n)
        )
        return [json.loads(body) for (body,) in cur]

    def purchased_items(self, customer_id: str) -> list[str]:
        """Items the customer bought, most recent first, each once."""
        cur = self._conn().execute(PURCHASED_ITEMS, (customer_id,))
        return [item for (item,) in cur]

    def set_stock(self, stock: dict[str, bool]) -> None:
        """Override items' in-stock flags (committed before returning)."""
        conn = self._conn()
        with conn:
            conn.executemany(
                "INSERT INTO stock (item_id, in_stock) VALUES (?, ?) "
                "ON CONFLICT (item_id) DO UPDATE SET in_stock = excluded.in_stock",
                [(item, int(flag)) for item, flag in stock.items()],
            )

    def stock_overrides(self) -> dict[str, bool]:
        """Every in-stock override recorded so far."""
        return {item: bool(flag) for item, flag in self._conn().execute("SELECT item_id, in_stock FROM stock")}

    def event_log(self, after: int = 0, limit: int = 100_000) -> list[tuple[int, Event]]:
        """Stored events in arrival order after sequence number `after`."""
        cur = self._conn().execute("SELECT seq, body FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit))
        return [(seq, json.loads(body)) for seq, body in cur]

    def record_signals(self, kind: str, signals: list[Signal]) -> list[str]:
        """Insert the signals in one transaction; returns the keys not stored before."""
        fields, new = SIGNAL_FIELDS[kind], []
        conn = self._conn()
        with conn:
            for s in signals:
                key = signal_key(kind, s)
                cur = conn.execute(
                    "INSERT OR IGNORE INTO signals (kind, key, customer_id, ts, body) VALUES (?, ?, ?, ?, ?)",
                    (kind, key, s["customer_id"], s[SIGNAL_TIME[kind]], json.dumps({k: s.get(k) for k in fields})),
                )
                if cur.rowcount:
                    new.append(key)
        return new

    def customer_signals(self, kind: str, customer_id: str) -> list[Signal]:
        """The customer's stored signals of one kind, oldest first."""
        cur = self._conn().execute(
            "SELECT body FROM signals WHERE kind = ? AND customer_id = ? ORDER BY ts, seq", (kind, customer_id)
        )
        return [json.loads(body) for (body,) in cur]

    def signal_log(self, kind: str, after: int = 0, limit: int = 100_000) -> list[tuple[int, Signal]]:
        """Stored signals of one kind in arrival order after sequence number `after`."""
        cur = self._conn().execute(
            "SELECT seq, body FROM signals WHERE kind = ? AND seq > ? ORDER BY seq LIMIT ?", (kind, after, limit)
        )
        return [(seq, json.loads(body)) for seq, body in cur]

    def forget(self, customer_ids: list[str], keys: list[str]) -> int:
        """Delete the customers' events and signals and record their keys as erased, in one transaction."""
        ids = [(c,) for c in customer_ids]
        conn = self._conn()
        with conn:
            before = conn.total_changes
            conn.executemany("DELETE FROM events WHERE customer_id = ?", ids)
            conn.executemany("DELETE FROM signals WHERE customer_id = ?", ids)
            deleted = conn.total_changes - before
            conn.executemany("INSERT OR IGNORE INTO erased (key) VALUES (?)", [(k,) for k in keys])
        return deleted

    def erased_keys(self) -> frozenset[str]:
        """The salted hashes of every erased customer."""
        return frozenset(k for (k,) in self._conn().execute("SELECT key FROM erased"))

    def erased_count(self) -> int:
        """How many customers were erased."""
        return int(self._conn().execute("SELECT COUNT(*) FROM erased").fetchone()[0])

    def clear(self) -> None:
        """Delete every event, signal, stock override and erased key."""
        conn = self._conn()
        with conn:
            conn.execute("DELETE FROM events")
            conn.execute("DELETE FROM stock")
            conn.execute("DELETE FROM signals")
            conn.execute("DELETE FROM erased")

    def close(self) -> None:
        """Stop the checkpoint thread and close every connection this store opened."""
        self._stop.set()
        for conn in self._all:
            conn.close()
        self._all.clear()
        self._local = threading.local()
