"""The BentoML service `Patron`: its routes. What they answer from (champions, online state, retention inputs) is
loaded by the worker's runtime (serving/runtime.py) when the worker starts; the answers come from serving/answers."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import anyio
import anyio.to_thread
import bentoml
from bentoml.exceptions import BadInput, NotFound, ServiceUnavailable
from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from threadpoolctl import threadpool_limits

from serving.access.client_errors import ClientErrorLog
from serving.access.content_type import FORMS, ContentTypeGuard
from serving.answers import recommendations
from serving.answers.alerts import AlertDispatcher
from serving.answers.campaigns import campaign_answer, served_campaign
from serving.answers.erasure import erase_customers
from serving.answers.live_churn import LiveChurn, new_signals
from serving.answers.retention_plan import plan_for
from serving.answers.rules import RuleBook
from serving.dashboard import view as dashboard
from serving.dashboard.pages import DashboardPages
from serving.online.events import validate_events, validate_signals
from serving.openapi_document import OpenAPIDocument, allow_every_method, known_query_parameters
from serving.openapi_errors import declare_error_responses, error_responses
from serving.runtime import Runtime, access_control, worker_settings
from serving.schemas import (
    AlertsResponse,
    CampaignReadoutResponse,
    CampaignRequest,
    CampaignResponse,
    ChurnRequest,
    ChurnResponse,
    EraseRequest,
    EraseResponse,
    EventsRequest,
    EventsResponse,
    ModelStatus,
    RecommendRequest,
    RecommendResponse,
    RetentionPlanRequest,
    RetentionPlanResponse,
    SimilarItemsRequest,
    SimilarItemsResponse,
    StatusResponse,
    StockRequest,
    StockResponse,
    parse_date_time,
)

logger = logging.getLogger("bentoml.patron")

# Plain GET routes (BentoML APIs are POST only), mounted passively: only these paths reach it.
http_api = FastAPI(docs_url=None, redoc_url=None, openapi_url=None, dependencies=[Depends(known_query_parameters)])
declare_error_responses()  # the OpenAPI document declares every error status in the shape it is sent
allow_every_method(http_api)  # a 405's Allow header lists every method of the path


# Workers, request timeout, access log and metrics come from the launcher (serving/server.py:bentoml_config).
@bentoml.asgi_app(http_api, path="/")
@bentoml.service(name="patron")
class Patron:
    """Patron's online API; not ready until both champions and the online state are loaded."""

    def __init__(self) -> None:
        self.settings = worker_settings()
        self.runtime = Runtime(self.settings)
        self.rules = RuleBook(self.settings)
        self.live_churn = LiveChurn(self.settings, AlertDispatcher(self.settings))
        self._handler_thread = anyio.CapacityLimiter(1)  # larger requests: one at a time, as BentoML runs sync APIs
        self.pages = DashboardPages(self.settings, self.runtime)

    @bentoml.on_startup
    def load(self) -> None:
        """Load the champions, the online state and the retention inputs before serving (failures: not ready)."""
        # Multi-threaded BLAS in one request (the ALS scoring, the fold-in) costs several times the CPU for no gain.
        threadpool_limits(self.settings.serving.blas_threads, "blas")
        self.runtime.start()
        self.pages.start()

    @bentoml.on_shutdown
    def stop(self) -> None:
        """Stop watching the registry and close the online store."""
        self.runtime.stop()

    def __is_ready__(self) -> bool:
        return self.runtime.is_ready()

    async def _run(self, handler: Callable[[Any], Any], request: Any, rows: int) -> Any:
        """Run a handler on the worker's event loop when the request is small (no hand-off to a thread and back,
        whose GIL waits were most of the tail), else on the worker's handler thread (health checks stay answered)."""
        if rows <= self.settings.serving.inline_max_rows:
            return handler(request)
        return await anyio.to_thread.run_sync(handler, request, limiter=self._handler_thread)

    def _check_k(self, k: int) -> None:
        if k > self.settings.serving.max_k:
            raise BadInput(f"k: must be at most {self.settings.serving.max_k}, got {k}")

    @bentoml.api(route="/recommend")
    async def recommend(self, request: RecommendRequest, /) -> RecommendResponse:
        """Top-k items for a customer (popular items when not personalised)."""
        return await self._run(self._recommend, request, 1 + len(request.context_item_ids or []))

    def _recommend(self, request: RecommendRequest) -> RecommendResponse:
        self._check_k(request.k)
        champions, state = self.runtime.ready()
        customer = self.runtime.masked([request.customer_id])[0]
        answer = recommendations.recommend(
            champions.recommender,
            state,
            customer,
            request.k,
            request.exclude_purchased,
            request.categories,
            request.context_item_ids,
            self.rules.current(),
            self.settings,
            self.runtime.cycles,
        )
        return RecommendResponse(
            customer_id=request.customer_id,
            items=answer.items,
            model_version=champions.recommender_version,
            fallback=answer.fallback,
            rules_applied=answer.rules_applied,
            source=answer.source,
        )

    @bentoml.api(route="/events")
    async def events(self, request: EventsRequest, /) -> EventsResponse:
        """Record live events, tickets and survey answers (idempotent, committed before the answer); bad rows are
        listed. Service signals rescore the customer's churn risk and may raise an alert (see GET /alerts)."""
        signals = bool(request.tickets or request.surveys)  # rescoring churn: on the thread
        return await self._run(self._events, request, len(request.events) + (1 << 30) * signals)

    def _events(self, request: EventsRequest) -> EventsResponse:
        champions, state = self.runtime.ready()
        valid, rejected = validate_events(request.events, state.category_of)
        signals = {
            kind: validate_signals(kind, rows)
            for kind, rows in (("tickets", request.tickets), ("surveys", request.surveys))
        }
        valid, signals = self.runtime.without_erased(valid, signals)
        rejected += [r for _, bad in signals.values() for r in bad]
        try:
            accepted, duplicates = state.store.record_events(valid) if valid else (0, 0)
            stored = {kind: state.store.record_signals(kind, good) for kind, (good, _) in signals.items()}
        except Exception as exc:  # noqa: BLE001 - nothing was acknowledged: the client must retry
            raise ServiceUnavailable(f"online store unavailable, events not recorded: {exc}") from exc
        new = new_signals(valid, accepted > 0, signals, stored)
        for kind, (good, _) in signals.items():
            accepted, duplicates = accepted + len(stored[kind]), duplicates + len(good) - len(stored[kind])
        alerts = 0
        try:  # the rows are stored: a rescoring failure must not fail the request
            alerts = self.live_churn.on_signals(
                champions.churn, champions.churn_version, state, new, self.runtime.best_offer
            )
        except Exception as exc:  # noqa: BLE001
            logger.warning("churn rescoring after service signals failed: %s: %s", type(exc).__name__, exc)
        return EventsResponse(accepted=accepted, duplicates=duplicates, rejected=rejected, alerts=alerts)

    # Plain FastAPI routes: BentoML's exceptions would become 500s here, so errors are answered as JSON directly.
    @http_api.get("/dashboard", response_class=HTMLResponse, responses=error_responses())
    async def dashboard_page(
        self, segment: str = Query(""), tier: str = Query(""), offer: str = Query(""), channel: str = Query("")
    ) -> Response:
        """GET /dashboard: customers worth saving first, the likely lost apart (filters: segment, tier, offer,
        channel), segments and the plan's value vs budget."""
        return await self.pages.run(self.pages.main, segment, tier, offer, channel)

    @http_api.get("/dashboard/campaigns", response_class=HTMLResponse, responses=error_responses())
    async def dashboard_campaigns(self, campaign: str = Query("", max_length=200)) -> Response:
        """GET /dashboard/campaigns[?campaign=ID]: campaigns, one readout, loyalty KPIs per month and segment."""
        return await self.pages.run(self.pages.campaigns, campaign)

    @http_api.get(
        "/dashboard/customer/{customer_id}", response_class=HTMLResponse, responses=error_responses(plain_text_404=True)
    )
    async def dashboard_customer(self, customer_id: str) -> Response:
        """GET /dashboard/customer/ID: one listed customer's reasons, CLV, offer and recent history."""
        return await self.pages.run(self.pages.customer, customer_id)

    @http_api.get("/dashboard/login", response_class=HTMLResponse)
    def dashboard_login_form(self) -> HTMLResponse:
        """GET /dashboard/login: the form that stores an API key in the dashboard's cookie."""
        return HTMLResponse(dashboard.render_login())

    @http_api.post(
        "/dashboard/login",
        response_model=None,
        responses={**error_responses(html_400=True), 303: {"description": "logged in: back to /dashboard"}},
        openapi_extra={
            "requestBody": {"required": True, "content": {media: {"schema": dashboard.LOGIN_FORM} for media in FORMS}}
        },
    )
    async def dashboard_login(self, request: Request) -> Response:
        """POST /dashboard/login (form field api_key): sets the HttpOnly, SameSite=Strict cookie, back to /dashboard."""
        return await dashboard.log_in(request)

    # `since` is declared a plain optional date-time: a query string cannot carry the `null` of `datetime | None`;
    # parsed here, strictly (pydantic would take a number as a Unix time).
    @http_api.get("/alerts", response_model=AlertsResponse, responses=error_responses())
    def alerts(
        self, since: str = Query(None, json_schema_extra={"format": "date-time"}), limit: int = Query(100, ge=1)
    ) -> Response:
        """GET /alerts?since=&limit=: churn alerts raised at or after `since` (UTC), oldest first, with delivery."""
        limit = min(limit, self.settings.alerts.max_list)
        if since is not None:
            try:
                since = parse_date_time("since", since)
            except ValueError as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
        if since is not None and since.tzinfo:
            try:
                since = since.astimezone(UTC).replace(tzinfo=None)
            except OverflowError:  # before the first (or after the last) representable instant once in UTC
                since = datetime.min if since.year == datetime.min.year else datetime.max
        return AlertsResponse(alerts=self.live_churn.dispatcher.log.alerts(since, limit))

    @bentoml.api(route="/items/stock")
    def items_stock(self, request: StockRequest, /) -> StockResponse:
        """Set items in or out of stock for every worker, effective from the next request."""
        _, state = self.runtime.ready()
        rejected = [
            {"index": n, "kind": "items", "reason": f"item_id: unknown item (not in products), got {u.item_id!r}"}
            for n, u in enumerate(request.items)
            if u.item_id not in state.category_of
        ]
        known = {u.item_id: u.in_stock for u in request.items if u.item_id in state.category_of}
        if known:
            state.store.set_stock(known)
        return StockResponse(updated=len(known), rejected=rejected)

    @bentoml.api(route="/status")
    def status(self) -> StatusResponse:
        """Which model versions serve, what the registry says, reload errors and the rules in force."""
        champions = self.runtime.champions
        serving = {
            "recommender": champions and champions.recommender_version,
            "churn": champions and champions.churn_version,
        }
        models = [
            ModelStatus(
                model=m,
                serving_version=serving[m],
                registry_version=st.registry_version,
                last_error=st.last_error,
                last_checked=st.last_checked,
                source=champions and getattr(champions, f"{m}_source"),
            )
            for m, st in self.runtime.watcher.status.items()
        ]
        return StatusResponse(
            ready=self.runtime.loaded(),
            worker_pid=os.getpid(),
            models=models,
            rules=self.rules.current().model_dump(),
            rules_error=self.rules.error,
            online_backend=self.settings.online.backend,
        )

    @bentoml.api(route="/similar_items")
    async def similar_items(self, request: SimilarItemsRequest, /) -> SimilarItemsResponse:
        """Top-k in-stock items similar to an item."""
        return await self._run(self._similar_items, request, 1)

    def _similar_items(self, request: SimilarItemsRequest) -> SimilarItemsResponse:
        self._check_k(request.k)
        champions, state = self.runtime.ready()
        if not champions.recommender.knows_item(request.item_id):
            raise NotFound(
                f"item_id {request.item_id!r} is unknown to recommender version {champions.recommender_version}"
            )
        items = recommendations.similar_items(champions.recommender, state, request.item_id, request.k)
        return SimilarItemsResponse(item_id=request.item_id, items=items, model_version=champions.recommender_version)

    @bentoml.api(route="/churn")
    async def churn(self, request: ChurnRequest, /) -> ChurnResponse:
        """Churn probability, risk tier and top reasons per customer (known=false for unknown ones)."""
        return await self._run(self._churn, request, len(request.customer_ids))

    def _churn(self, request: ChurnRequest) -> ChurnResponse:
        if len(request.customer_ids) > self.settings.serving.max_batch:
            raise BadInput(f"customer_ids: at most {self.settings.serving.max_batch} ids per request")
        champions, state = self.runtime.ready()
        ids = self.runtime.masked(request.customer_ids)
        scores = self.runtime.churn_rows(champions, state).scores(ids)
        extras = self.runtime.extras
        if extras is not None:
            scores = [{**s, **extra} for s, extra in zip(scores, extras.extras(ids), strict=True)]
        scores = [{**s, "customer_id": c} for s, c in zip(scores, request.customer_ids, strict=True)]
        return ChurnResponse(scores=scores, model_version=champions.churn_version)

    @bentoml.api(route="/retention/plan")
    def retention_plan(self, request: RetentionPlanRequest, /) -> RetentionPlanResponse:
        """At most one offer per consenting active customer, maximising expected net value within the budget."""
        champions, state = self.runtime.ready()
        value = self.runtime.retention
        if value is None:
            raise ServiceUnavailable(f"retention plan unavailable: {self.runtime.retention_error}")
        offers = None if request.offers is None else [o.model_dump() for o in request.offers]
        try:
            active = state.customer_features(self.runtime.masked(sorted(value.active)))
            plan = plan_for(
                self.settings, champions.churn, active, value, offers, request.budget, request.max_customers
            )
        except ValueError as exc:
            raise BadInput(str(exc)) from exc
        rows = plan.rows.astype(object).where(plan.rows.notna(), None).to_dict(orient="records")
        return RetentionPlanResponse(
            plan=rows,
            totals=plan.totals(),
            model_versions={"churn": champions.churn_version, "clv": value.clv_version, "uplift": value.uplift_version},
        )

    @bentoml.api(route="/campaigns")
    def campaigns(self, request: CampaignRequest, /) -> CampaignResponse:
        """The retention plan at this budget as a campaign with a seeded holdout (same name: the same campaign)."""
        champions, state = self.runtime.ready()
        value = self.runtime.retention
        if value is None:
            raise ServiceUnavailable(f"campaigns unavailable: {self.runtime.retention_error}")

        def plan(budget: float):
            active = state.customer_features(self.runtime.masked(sorted(value.active)))
            return plan_for(self.settings, champions.churn, active, value, None, budget, None)

        try:
            made = served_campaign(
                self.settings, plan, value.marketing_refused, request.budget, request.holdout, request.name
            )
        except ValueError as exc:
            raise BadInput(str(exc)) from exc
        return CampaignResponse(created=made.created, campaign=made.campaign.meta)

    @http_api.get("/campaigns/{campaign_id}", responses=error_responses())
    def campaign_readout(self, campaign_id: str) -> CampaignReadoutResponse:
        """GET /campaigns/ID: treatment vs holdout with intervals and verdicts (provisional until the window ends)."""
        try:
            return CampaignReadoutResponse(**campaign_answer(self.settings, campaign_id))
        except LookupError as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)

    @bentoml.api(route="/admin/erase")
    def admin_erase(self, request: EraseRequest, /) -> EraseResponse:
        """Right to be forgotten: erase customers from the workspace, the online store and the alerts log; every
        worker answers for them as for unknown customers from the next request on."""
        self.runtime.ready()
        try:
            report = erase_customers(self.settings, request.customer_ids, self.runtime.store)
        except ValueError as exc:
            raise BadInput(str(exc)) from exc
        logger.info("erased %d customers (%d new)", report.customers, report.newly_erased)
        return EraseResponse(
            customers=report.customers,
            newly_erased=report.newly_erased,
            workspace_rows_removed=sum(report.rows_removed.values()),
            workspace_files_changed=len(report.rows_removed),
            online_rows_removed=report.online_rows_removed,
            alerts_removed=report.alerts_removed,
        )


def _openapi_document(app: Any) -> OpenAPIDocument:
    return OpenAPIDocument(app, worker_settings())


# Outermost first: each 4xx logged as one line; the OpenAPI document completed; API key, scope, rate and body size
# checked before every handler (serving/access/auth.py holds the route -> scope map); then the body's content type.
Patron.add_asgi_middleware(ClientErrorLog)
Patron.add_asgi_middleware(_openapi_document)
Patron.add_asgi_middleware(access_control)
Patron.add_asgi_middleware(ContentTypeGuard)
