"""Validate live events against the data contract, row by row, so a batch keeps its good rows."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Collection, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from features.contract import CHANNELS, EVENT_TYPES
from serving.online_store import Event

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
    unit_price: Optional[float] = Field(None, ge=0)
    channel: Literal[CHANNELS] = "online"
    order_id: Optional[str] = None


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
    return ts.astimezone(timezone.utc).replace(tzinfo=None) if ts.tzinfo is not None else ts


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
            rejected.append({"index": index, "reason": f"item_id: unknown item (not in products), "
                                                       f"got {event.item_id!r}"})
            continue
        out = event.model_dump()
        out["ts"] = _naive_utc(event.ts).strftime(TS_FORMAT)
        valid.append(out)
    return valid, rejected
