"""Request and response bodies of the serving API (pydantic models; BentoML builds the OpenAPI from them)."""

from __future__ import annotations

from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field

from patron.config import OnlineConfig, ServingConfig

# Field bounds come from the serving defaults in patron/config.py (the service re-checks the configured ones).
_LIMITS = ServingConfig()
_LIMITS_EVENTS = OnlineConfig().max_events


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RecommendRequest(_Request):
    """Body of POST /recommend."""

    customer_id: str = Field(min_length=1)
    k: int = Field(10, ge=1, le=_LIMITS.max_k)
    exclude_purchased: bool = True
    categories: Optional[list[str]] = Field(None, min_length=1)
    context_item_ids: Optional[list[str]] = Field(None, min_length=1, max_length=50)


class SimilarItemsRequest(_Request):
    """Body of POST /similar_items."""

    item_id: str = Field(min_length=1)
    k: int = Field(10, ge=1, le=_LIMITS.max_k)


class ChurnRequest(_Request):
    """Body of POST /churn."""

    customer_ids: list[str] = Field(min_length=1, max_length=_LIMITS.max_batch)


class RecommendedItem(BaseModel):
    """One recommended item and why."""

    item_id: str
    score: float
    reason: str


class RecommendResponse(BaseModel):
    """Answer of POST /recommend."""

    customer_id: str
    items: list[RecommendedItem]
    model_version: str
    fallback: bool
    rules_applied: list[str] = []
    source: str = "popular"


class SimilarItemsResponse(BaseModel):
    """Answer of POST /similar_items."""

    item_id: str
    items: list[RecommendedItem]
    model_version: str


class ChurnReason(BaseModel):
    """One feature pushing a customer's churn probability up."""

    feature: str
    value: Optional[float | str]
    contribution: float
    text: str


class ChurnScore(BaseModel):
    """Churn probability, risk tier and reasons for one customer (null probability when unknown)."""

    customer_id: str
    churn_probability: Optional[float]
    risk_tier: Optional[str]
    reasons: list[ChurnReason]
    known: bool


class ChurnResponse(BaseModel):
    """Answer of POST /churn."""

    scores: list[ChurnScore]
    model_version: str


class EventsRequest(_Request):
    """Body of POST /events: rows are validated one by one, so good rows are kept beside bad ones."""

    events: list[dict[str, Any]] = Field(min_length=1, max_length=_LIMITS_EVENTS)


class RejectedRow(BaseModel):
    """A row refused, by its position in the request, and why (naming the field)."""

    index: int
    reason: str


class EventsResponse(BaseModel):
    """Answer of POST /events."""

    accepted: int
    duplicates: int
    rejected: list[RejectedRow]


class StockUpdate(_Request):
    """One item's stock flag."""

    item_id: str = Field(min_length=1)
    in_stock: bool


class StockRequest(_Request):
    """Body of POST /items/stock."""

    items: list[StockUpdate] = Field(min_length=1, max_length=_LIMITS.max_batch)


class StockResponse(BaseModel):
    """Answer of POST /items/stock."""

    updated: int
    rejected: list[RejectedRow]


class ModelStatus(BaseModel):
    """One champion as served, and the outcome of the last reload attempt."""

    model: str
    serving_version: Optional[str]
    registry_version: Optional[str]
    last_error: Optional[str]
    last_checked: Optional[str]


class StatusResponse(BaseModel):
    """Answer of GET /status."""

    ready: bool
    worker_pid: int
    models: list[ModelStatus]
    rules: dict[str, Any]
    rules_error: Optional[str]
    online_backend: str
