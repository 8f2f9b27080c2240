"""The production online store on Redis: every key under one prefix, each batch of events written by one script."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import redis
from bentoml.exceptions import ServiceUnavailable

from serving.online.store import EVENT_FIELDS, SIGNAL_FIELDS, SIGNAL_TIME, Event, Signal, signal_key

# Per event: claim the event id (SET NX), then append it to the log, the customer's history and purchases.
# One script per batch, so a batch is applied atomically and in one round trip.
RECORD = """
local p = ARGV[1]
local accepted = 0
for i = 2, #ARGV, 6 do
  local eid, customer, item, kind, score, body = ARGV[i], ARGV[i+1], ARGV[i+2], ARGV[i+3], ARGV[i+4], ARGV[i+5]
  if redis.call('SET', p .. ':eid:' .. eid, '1', 'NX') then
    local seq = redis.call('INCR', p .. ':seq')
    redis.call('ZADD', p .. ':log', seq, body)
    redis.call('ZADD', p .. ':c:' .. customer .. ':ev', score, body)
    if kind == 'purchase' then
      redis.call('ZADD', p .. ':c:' .. customer .. ':bought', 'GT', score, item)
    end
    accepted = accepted + 1
  end
end
return accepted
"""

# Per signal: claim its key (SET NX), then append it to the kind's log and the customer's list; returns new keys.
RECORD_SIGNALS = """
local p, kind = ARGV[1], ARGV[2]
local new = {}
for i = 3, #ARGV, 4 do
  local key, customer, score, body = ARGV[i], ARGV[i+1], ARGV[i+2], ARGV[i+3]
  if redis.call('SET', p .. ':sig:' .. kind .. ':key:' .. key, '1', 'NX') then
    local seq = redis.call('INCR', p .. ':sig:' .. kind .. ':seq')
    redis.call('ZADD', p .. ':sig:' .. kind .. ':log', seq, body)
    redis.call('ZADD', p .. ':c:' .. customer .. ':sig:' .. kind, score, body)
    table.insert(new, key)
  end
end
return new
"""


class StoreUnavailable(ServiceUnavailable):
    """Redis cannot be reached: nothing was read or written, the request is answered 503 and may be retried."""


class _Client(redis.Redis):
    """A Redis client whose connection failures surface as StoreUnavailable, so every endpoint fails the same way."""

    def execute_command(self, *args, **options):
        try:
            return super().execute_command(*args, **options)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise StoreUnavailable(f"online store unavailable: {exc}") from exc


def _score(ts: str) -> float:
    # Stored timestamps carry no zone and mean UTC.
    return datetime.fromisoformat(ts).replace(tzinfo=UTC).timestamp()


class RedisStore:
    """OnlineStore on Redis; a write returns once Redis acknowledged it (durable as far as Redis persists)."""

    def __init__(self, url: str, prefix: str = "patron", require_fsync: bool = False) -> None:
        self.prefix = prefix
        self.client = _Client.from_url(url, decode_responses=True)
        self._record = self.client.register_script(RECORD)
        self._record_signals = self.client.register_script(RECORD_SIGNALS)
        if require_fsync:
            problem = self.persistence_problem()
            if problem is not None:
                self.client.close()
                raise RuntimeError(
                    f"Redis at {url} would lose acknowledged events on a restart: {problem}; set "
                    "`appendonly yes` and `appendfsync always` (or online.redis_require_fsync: false)"
                )

    def persistence_problem(self) -> str | None:
        """Why a write Redis acknowledged may not survive a Redis crash or restart (None: fsynced to the AOF)."""
        try:
            config = self.client.config_get("append*")
        except redis.ResponseError as exc:  # CONFIG disabled (managed Redis): cannot tell, so cannot promise
            return f"its persistence settings cannot be read ({exc})"
        if config.get("appendonly") != "yes":
            return f"appendonly is {config.get('appendonly')!r}"
        if config.get("appendfsync") != "always":
            return f"appendfsync is {config.get('appendfsync')!r} (up to a second of writes lost on a crash)"
        return None

    def _key(self, *parts: str) -> str:
        return ":".join([self.prefix, *parts])

    def record_events(self, events: list[Event]) -> tuple[int, int]:
        """Store the events atomically; event ids already stored are counted as duplicates."""
        args: list[str] = [self.prefix]
        for e in events:
            body = json.dumps({k: e.get(k) for k in EVENT_FIELDS}, sort_keys=True)
            args += [e["event_id"], e["customer_id"], e["item_id"], e["type"], repr(_score(e["ts"])), body]
        accepted = int(self._record(keys=[], args=args))
        return accepted, len(events) - accepted

    def recent_events(self, customer_id: str, n: int) -> list[Event]:
        """The customer's latest n events, most recent first."""
        return [json.loads(b) for b in self.client.zrevrange(self._key("c", customer_id, "ev"), 0, n - 1)]

    def purchased_items(self, customer_id: str) -> list[str]:
        """Items the customer bought, most recent first, each once."""
        return self.client.zrevrange(self._key("c", customer_id, "bought"), 0, -1)

    def set_stock(self, stock: dict[str, bool]) -> None:
        """Override items' in-stock flags."""
        if stock:
            self.client.hset(self._key("stock"), mapping={item: int(flag) for item, flag in stock.items()})

    def stock_overrides(self) -> dict[str, bool]:
        """Every in-stock override recorded so far."""
        return {item: flag == "1" for item, flag in self.client.hgetall(self._key("stock")).items()}

    def event_log(self, after: int = 0, limit: int = 100_000) -> list[tuple[int, Event]]:
        """Stored events in arrival order after sequence number `after`."""
        rows = self.client.zrangebyscore(self._key("log"), f"({after}", "+inf", start=0, num=limit, withscores=True)
        return [(int(seq), json.loads(body)) for body, seq in rows]

    def record_signals(self, kind: str, signals: list[Signal]) -> list[str]:
        """Store the signals atomically; returns the keys not stored before."""
        args: list[str] = [self.prefix, kind]
        for s in signals:
            body = json.dumps({k: s.get(k) for k in SIGNAL_FIELDS[kind]}, sort_keys=True)
            args += [signal_key(kind, s), s["customer_id"], repr(_score(s[SIGNAL_TIME[kind]])), body]
        return list(self._record_signals(keys=[], args=args)) if signals else []

    def customer_signals(self, kind: str, customer_id: str) -> list[Signal]:
        """The customer's stored signals of one kind, oldest first."""
        return [json.loads(b) for b in self.client.zrange(self._key("c", customer_id, "sig", kind), 0, -1)]

    def signal_log(self, kind: str, after: int = 0, limit: int = 100_000) -> list[tuple[int, Signal]]:
        """Stored signals of one kind in arrival order after sequence number `after`."""
        rows = self.client.zrangebyscore(
            self._key("sig", kind, "log"), f"({after}", "+inf", start=0, num=limit, withscores=True
        )
        return [(int(seq), json.loads(body)) for body, seq in rows]

    def forget(self, customer_ids: list[str], keys: list[str]) -> int:
        """Delete the customers' events, purchases and signals with their idempotency keys (one transaction) and
        add their keys to the erased set; returns the events and signals deleted."""
        deleted = 0
        with self.client.pipeline(transaction=True) as pipe:
            if keys:
                pipe.sadd(self._key("erased"), *keys)
            for customer in customer_ids:
                events = self.client.zrange(self._key("c", customer, "ev"), 0, -1)
                if events:  # the same body strings are members of the log
                    pipe.zrem(self._key("log"), *events)
                    pipe.delete(*(self._key("eid", json.loads(b)["event_id"]) for b in events))
                for kind in SIGNAL_FIELDS:
                    signals = self.client.zrange(self._key("c", customer, "sig", kind), 0, -1)
                    if signals:
                        pipe.zrem(self._key("sig", kind, "log"), *signals)
                        pipe.delete(*(self._key("sig", kind, "key", signal_key(kind, json.loads(b))) for b in signals))
                    deleted += len(signals)
                deleted += len(events)
                pipe.delete(
                    self._key("c", customer, "ev"),
                    self._key("c", customer, "bought"),
                    *(self._key("c", customer, "sig", kind) for kind in SIGNAL_FIELDS),
                )
            pipe.execute()
        return deleted

    def erased_keys(self) -> frozenset[str]:
        """The salted hashes of every erased customer."""
        return frozenset(self.client.smembers(self._key("erased")))

    def erased_count(self) -> int:
        """How many customers were erased."""
        return int(self.client.scard(self._key("erased")))

    def clear(self) -> None:
        """Delete every key under this store's prefix."""
        keys = list(self.client.scan_iter(match=self._key("*"), count=1000))
        for start in range(0, len(keys), 1000):
            self.client.delete(*keys[start : start + 1000])

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()
