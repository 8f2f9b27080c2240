"""Request and response bodies of the serving API (pydantic models; BentoML builds the OpenAPI from them)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from patron.config import OnlineConfig, ServingConfig

# Field bounds come from the serving defaults in patron/config/serving.py (the service re-checks the configured ones).
_LIMITS = ServingConfig()
_LIMITS_EVENTS = OnlineConfig().max_events


# RFC 3339 date-time (T or space between date and time); without an offset it is read as UTC.
_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})?", re.IGNORECASE)


def parse_date_time(name: str, text: str) -> datetime:
    """A query parameter's RFC 3339 date-time (ValueError naming `name` otherwise; no numbers, no free text)."""
    if not _DATE_TIME.fullmatch(text):
        raise ValueError(f"{name}: expected an RFC 3339 date-time such as 2026-03-01T00:00:00Z, got {text[:40]!r}")
    text = text.upper().replace(" ", "T")
    if text[17:19] == "60":  # a leap second: RFC 3339 has them, Python's datetime does not
        text = text[:17] + "59" + text[19:]
    try:
        return datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from exc


def _nullable(schema: dict[str, Any]) -> None:
    """Mark optional fields `nullable` (OpenAPI 3.0): BentoML keeps only the first alternative of a body's top-level
    `anyOf`, which would drop `null` from the declared schema."""
    for prop in schema.get("properties", {}).values():
        if any(alt.get("type") == "null" for alt in prop.get("anyOf", ())):
            prop["nullable"] = True


class _Request(BaseModel):
    # strict: a JSON value of another type than declared is a 400 (lax mode took `false` for an integer as 0).
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra=_nullable)


class RecommendRequest(_Request):
    """Body of POST /recommend."""

    customer_id: str = Field(min_length=1)
    k: int = Field(10, ge=1, le=_LIMITS.max_k)
    exclude_purchased: bool = True
    categories: list[str] | None = Field(None, min_length=1, max_length=_LIMITS.max_list_items)
    context_item_ids: list[str] | None = Field(None, min_length=1, max_length=50)


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
    """One reason pushing a customer's churn probability up: a feature, or a group of features summed."""

    feature: str
    group: str | None = None
    value: float | str | None
    contribution: float
    text: str


class CustomerSegment(BaseModel):
    """RFM score, lifecycle stage and CLV value tier of one customer."""

    lifecycle_stage: str | None
    value_tier: str | None
    rfm_score: str | None


class BestOffer(BaseModel):
    """The default offer worth most for one customer (only positive values; none without marketing consent)."""

    offer_type: str
    expected_net_value: float


class ChurnScore(BaseModel):
    """Churn probability, risk tier and reasons for one customer (null probability when unknown).

    segment, clv, best_offer and priority are filled when the CLV and uplift models are registered; priority says
    whom to act on first (serving/answers/priority.py): save (the best offer's expected net value is positive; sort
    by best_offer.expected_net_value), likely_lost (low value or no expected effect) or no_marketing_consent.
    """

    customer_id: str
    churn_probability: float | None
    risk_tier: str | None
    reasons: list[ChurnReason]
    known: bool
    segment: CustomerSegment | None = None
    clv: float | None = None
    best_offer: BestOffer | None = None
    priority: Literal["save", "likely_lost", "no_marketing_consent"] | None = None


class ChurnResponse(BaseModel):
    """Answer of POST /churn."""

    scores: list[ChurnScore]
    model_version: str


class RetentionOffer(_Request):
    """One offer type the plan may send and what each costs."""

    offer_type: str = Field(min_length=1)
    # OpenAPI 3.0 (what BentoML declares) spells an exclusive bound as a boolean beside `minimum`.
    cost: float = Field(gt=0, json_schema_extra={"minimum": 0, "exclusiveMinimum": True})


class RetentionPlanRequest(_Request):
    """Body of POST /retention/plan (offers default to retention.offers of the config)."""

    budget: float = Field(ge=0)
    offers: list[RetentionOffer] | None = Field(None, min_length=1, max_length=_LIMITS.max_list_items)
    max_customers: int | None = Field(None, ge=0)


class PlanRow(BaseModel):
    """One customer to contact, with which offer, and why."""

    customer_id: str
    lifecycle_stage: str | None
    value_tier: str | None
    rfm_score: str | None
    churn_probability: float
    clv: float
    offer_type: str
    cost: float
    expected_net_value: float
    top_reasons: str
    preferred_channel: str | None


class PlanTotals(BaseModel):
    """What the plan spends and is expected to keep, and how it was solved."""

    customers: int
    spend: float
    expected_net_value: float
    eligible_customers: int
    skipped_no_consent: int
    solver: str
    optimal: bool
    upper_bound: float


class RetentionPlanResponse(BaseModel):
    """Answer of POST /retention/plan: the rows, highest expected net value first, and totals."""

    plan: list[PlanRow]
    totals: PlanTotals
    model_versions: dict[str, str]


class CampaignRequest(_Request):
    """Body of POST /campaigns: the retention plan at this budget, sent with a random holdout."""

    budget: float = Field(ge=0)
    # default: campaign.holdout of the config; 0 is refused by the handler (an exclusive bound inside `anyOf` is not
    # expressible in the OpenAPI 3.0 BentoML declares)
    holdout: float | None = Field(None, ge=0, le=0.5)
    name: str | None = Field(None, min_length=1, max_length=100)  # default: retention-<send day>; same name, same one


class CampaignResponse(BaseModel):
    """Answer of POST /campaigns: the campaign's settings and counts, and whether this request created it."""

    created: bool
    campaign: dict[str, Any]


class CampaignReadoutResponse(BaseModel):
    """Answer of GET /campaigns/{id}: treatment vs holdout overall, per offer, segment and segment x offer."""

    campaign: dict[str, Any]
    window: dict[str, str]
    provisional: bool
    overall: list[dict[str, Any]]
    by_offer: list[dict[str, Any]]
    by_segment: list[dict[str, Any]]
    by_segment_offer: list[dict[str, Any]]


class EventsRequest(_Request):
    """Body of POST /events: events, tickets and survey answers, each row validated alone (good rows are kept)."""

    events: list[dict[str, Any]] = Field([], max_length=_LIMITS_EVENTS)
    tickets: list[dict[str, Any]] = Field([], max_length=_LIMITS_EVENTS)
    surveys: list[dict[str, Any]] = Field([], max_length=_LIMITS_EVENTS)

    @model_validator(mode="after")
    def _not_empty(self) -> EventsRequest:
        if not (self.events or self.tickets or self.surveys):
            raise ValueError("events: at least one event, ticket or survey answer is needed")
        return self


class RejectedRow(BaseModel):
    """A row refused, by its list and position in the request, and why (naming the field)."""

    index: int
    reason: str
    kind: str = "events"


class EventsResponse(BaseModel):
    """Answer of POST /events (accepted and duplicates count events, tickets and survey answers together)."""

    accepted: int
    duplicates: int
    rejected: list[RejectedRow]
    alerts: int = 0  # churn alerts raised by this request's service signals


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
    serving_version: str | None
    registry_version: str | None
    last_error: str | None
    last_checked: str | None
    source: str | None = None  # "registry", or the local copy it serves from when the registry was unreachable


class StatusResponse(BaseModel):
    """Answer of GET /status."""

    model_config = ConfigDict(json_schema_extra=_nullable)

    ready: bool
    worker_pid: int
    models: list[ModelStatus]
    rules: dict[str, Any]
    rules_error: str | None
    online_backend: str


class ChurnAlert(BaseModel):
    """A customer's churn risk moved up a tier after service signals; sent to the CRM webhook."""

    alert_id: str
    customer_id: str
    old_tier: str
    new_tier: str
    old_probability: float
    churn_probability: float
    reasons: list[ChurnReason]  # what changed: the signals' features whose contributions rose most
    risk_reasons: list[ChurnReason] = []  # the new score's top reasons overall, as /churn gives them
    signals: list[str]
    best_offer: dict[str, Any] | None = None
    at: str
    model_version: str
    delivery: str  # off (no webhook), pending, delivered or failed
    attempts: int
    last_error: str | None = None


class AlertsResponse(BaseModel):
    """Answer of GET /alerts: alerts raised at or after `since`, oldest first."""

    alerts: list[ChurnAlert]


class EraseRequest(_Request):
    """Body of POST /admin/erase: customers who invoked the right to be forgotten."""

    customer_ids: list[str] = Field(min_length=1, max_length=_LIMITS.max_batch)


class EraseResponse(BaseModel):
    """What an erasure removed (no customer id is echoed back)."""

    customers: int
    newly_erased: int
    workspace_rows_removed: int
    workspace_files_changed: int
    online_rows_removed: int
    alerts_removed: int
