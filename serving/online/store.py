"""The online store every serving worker shares: customers' live events, stock overrides and the event log."""

from __future__ import annotations

from typing import Any, Protocol

# One event as stored: the contract's events columns, `ts` as an ISO 8601 string without time zone.
Event = dict[str, Any]
EVENT_FIELDS = ("event_id", "customer_id", "item_id", "ts", "type", "quantity", "unit_price", "channel", "order_id")
# Service signals (the contract's tickets and surveys tables), timestamps stored like events' `ts`.
Signal = dict[str, Any]
SIGNAL_FIELDS = {
    "tickets": ("ticket_id", "customer_id", "opened_at", "resolved_at", "category", "satisfaction"),
    "surveys": ("customer_id", "ts", "nps", "csat"),
}
SIGNAL_TIME = {"tickets": "opened_at", "surveys": "ts"}


def signal_key(kind: str, signal: Signal) -> str:
    """The contract key of a signal as one string: ticket_id, or customer_id and ts for a survey answer."""
    return signal["ticket_id"] if kind == "tickets" else f"{signal['customer_id']}|{signal['ts']}"


class OnlineStore(Protocol):
    """What the service and the batch ingest need from an online store (SQLite or Redis)."""

    def record_events(self, events: list[Event]) -> tuple[int, int]:
        """Store new events durably (idempotent by event_id); returns (accepted, duplicates)."""

    def recent_events(self, customer_id: str, n: int) -> list[Event]:
        """The customer's latest n events, most recent first."""

    def purchased_items(self, customer_id: str) -> list[str]:
        """Items the customer bought through the online store, most recent first, each once."""

    def set_stock(self, stock: dict[str, bool]) -> None:
        """Override items' in-stock flags."""

    def stock_overrides(self) -> dict[str, bool]:
        """Every in-stock override recorded so far."""

    def event_log(self, after: int = 0, limit: int = 100_000) -> list[tuple[int, Event]]:
        """Stored events in arrival order with their sequence numbers, those after `after` only."""

    def record_signals(self, kind: str, signals: list[Signal]) -> list[str]:
        """Store new tickets or survey answers durably (idempotent by contract key); returns the keys stored now."""

    def customer_signals(self, kind: str, customer_id: str) -> list[Signal]:
        """The customer's stored tickets or survey answers, oldest first."""

    def signal_log(self, kind: str, after: int = 0, limit: int = 100_000) -> list[tuple[int, Signal]]:
        """Stored signals of one kind in arrival order with their sequence numbers, those after `after` only."""

    def forget(self, customer_ids: list[str], keys: list[str]) -> int:
        """Erase customers: delete their events, purchases and signals (and their idempotency keys), add their
        salted hashes `keys` to the erased set; returns the rows deleted."""

    def erased_keys(self) -> frozenset[str]:
        """The salted hashes of every erased customer."""

    def erased_count(self) -> int:
        """How many customers were erased (a cheap change counter for the erased set)."""

    def clear(self) -> None:
        """Remove everything this store holds (tests, resets)."""

    def close(self) -> None:
        """Release connections."""


def cart_items(events: list[Event]) -> list[str]:
    """Items put in the cart and not bought since, most recent first, from events ordered most recent first."""
    bought, cart = set(), []
    for e in events:
        if e["type"] == "purchase":
            bought.add(e["item_id"])
        elif e["type"] == "cart" and e["item_id"] not in bought and e["item_id"] not in cart:
            cart.append(e["item_id"])
    return cart


def recent_categories(events: list[Event], category_of: dict[str, str], n: int = 5) -> list[str]:
    """The distinct categories of the customer's latest events, most recent first."""
    out: list[str] = []
    for e in events:
        c = category_of.get(e["item_id"])
        if c is not None and c not in out:
            out.append(c)
            if len(out) == n:
                break
    return out
