"""Per-request limits enforced in the ASGI layer: token-bucket rates per API key and a cap on request body size."""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

Receive = Callable[[], Awaitable[dict[str, Any]]]


class TokenBuckets:
    """One token bucket per name: refilled at `rate` tokens/s, holding at most `capacity` tokens."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # name -> (tokens, when)
        self._lock = threading.Lock()

    def take(self, name: str, rate: float, capacity: float) -> float:
        """Take one token: 0.0 when the request may go, else the seconds until a token is available."""
        now = self.clock()
        with self._lock:
            tokens, when = self._buckets.get(name, (capacity, now))
            tokens = min(capacity, tokens + (now - when) * rate)
            if tokens >= 1.0:
                self._buckets[name] = (tokens - 1.0, now)
                return 0.0
            self._buckets[name] = (tokens, now)
            return (1.0 - tokens) / rate


class BodyTooLarge(Exception):
    """The request body is over the limit; the message says by how much."""


def declared_length(headers: dict[str, str], limit: int) -> int | None:
    """The Content-Length header checked against `limit` (None when absent: the body is chunked)."""
    raw = headers.get("content-length")
    if raw is None:
        return None
    if not raw.isdigit():
        raise ValueError(f"Content-Length: not a number of bytes, got {raw[:40]!r}")
    if int(raw) > limit:
        raise BodyTooLarge(f"request body is {int(raw)} bytes; at most {limit} bytes are accepted")
    return int(raw)


async def read_capped(receive: Receive, limit: int) -> Receive:
    """Read a chunked body up to `limit` bytes (BodyTooLarge past it); returns a receive that replays it."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break  # the client went away: the app sees the disconnect
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if size > limit:
            raise BodyTooLarge(f"request body is over {limit} bytes, the most accepted")
        if not message.get("more_body", False):
            message = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            break
    pending = [message]

    async def replay() -> dict[str, Any]:
        return pending.pop() if pending else await receive()

    return replay
