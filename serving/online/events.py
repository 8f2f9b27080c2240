"""Validate live events and service signals against the data contract, row by row, so a batch keeps its good rows."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from features.tables.contract import CHANNELS, EVENT_TYPES, TICKET_CATEGORIES
from serving.online.store import Event, Signal

TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%f"  # fixed width, so stored timestamps sort as text


class LiveEvent(BaseModel):
    """One event as the contract's `events` table defines it (defaults for the optional columns)."""

    model_config = ConfigDict(extra="forbid")

    event_id: str = Field(min_length=1)
    customer_id: str = Field(min_length=1)
    item_id: str = Field(min_length=1)
    ts: datetime
    type: Literal[EVENT_TYPES]
    quantity: int = Field(1, ge=1)
    unit_price: float | None = Field(None, ge=0)
    channel: Literal[CHANNELS] = "online"
    order_id: str | None = None


class LiveTicket(BaseModel):
    """One support ticket as the contract's `tickets` table defines it."""

    model_config = ConfigDict(extra="forbid")

    ticket_id: str = Field(min_length=1)
    customer_id: str = Field(min_length=1)
    opened_at: datetime
    resolved_at: datetime | None = None
    category: Literal[TICKET_CATEGORIES]
    satisfaction: int | None = Field(None, ge=1, le=5)


class LiveSurvey(BaseModel):
    """One survey answer as the contract's `surveys` table defines it (at least one score)."""

    model_config = ConfigDict(extra="forbid")

    customer_id: str = Field(min_length=1)
    ts: datetime
    nps: int | None = Field(None, ge=0, le=10)
    csat: int | None = Field(None, ge=1, le=5)


SIGNAL_MODELS: dict[str, type[BaseModel]] = {"tickets": LiveTicket, "surveys": LiveSurvey}
_TIMES = {"tickets": ("opened_at", "resolved_at"), "surveys": ("ts",)}


def _reason(exc: ValidationError) -> str:
    """Every problem of one row, each naming its field."""
    parts = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "event"
        shown = "" if err["type"] == "missing" else f", got {err.get('input')!r}"
        parts.append(f"{field}: {err['msg']}{shown}")
    return "; ".join(parts)


def _naive_utc(ts: datetime) -> datetime:
    # The contract's timestamps carry no zone: aware ones are converted to UTC first.
    return ts.astimezone(UTC).replace(tzinfo=None) if ts.tzinfo is not None else ts


def validate_events(rows: list[Any], known_items: Collection[str]) -> tuple[list[Event], list[dict[str, Any]]]:
    """Events that fit the contract (ts normalised) and {index, reason} for every row that does not."""
    valid, rejected = [], []
    for index, row in enumerate(rows):
        try:
            event = LiveEvent.model_validate(row)
        except ValidationError as exc:
            rejected.append({"index": index, "reason": _reason(exc)})
            continue
        if event.item_id not in known_items:
            rejected.append(
                {"index": index, "reason": f"item_id: unknown item (not in products), got {event.item_id!r}"}
            )
            continue
        out = event.model_dump()
        out["ts"] = _naive_utc(event.ts).strftime(TS_FORMAT)
        valid.append(out)
    return valid, rejected


def _signal_problem(kind: str, signal: BaseModel) -> str | None:
    """A rule across fields that pydantic does not check per field, naming the field (None when fine)."""
    if (
        kind == "tickets"
        and signal.resolved_at is not None
        and _naive_utc(signal.resolved_at) < _naive_utc(signal.opened_at)
    ):
        return f"resolved_at: must not be before opened_at, got {signal.resolved_at.isoformat()!r}"
    if kind == "surveys" and signal.nps is None and signal.csat is None:
        return "nps: a survey answer needs nps or csat"
    return None


def validate_signals(kind: str, rows: list[Any]) -> tuple[list[Signal], list[dict[str, Any]]]:
    """Tickets or survey answers that fit the contract (timestamps normalised) and {index, reason} for the others."""
    valid, rejected = [], []
    for index, row in enumerate(rows):
        try:
            signal = SIGNAL_MODELS[kind].model_validate(row)
        except ValidationError as exc:
            rejected.append({"index": index, "kind": kind, "reason": _reason(exc)})
            continue
        problem = _signal_problem(kind, signal)
        if problem is not None:
            rejected.append({"index": index, "kind": kind, "reason": problem})
            continue
        out = signal.model_dump()
        for name in _TIMES[kind]:
            if out[name] is not None:
                out[name] = _naive_utc(out[name]).strftime(TS_FORMAT)
        valid.append(out)
    return valid, rejected
