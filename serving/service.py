"""The BentoML service `Patron`: recommendations, similar items and churn scores from the registry champions."""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
from datetime import datetime, timezone
from typing import Any, Callable

import anyio
import anyio.to_thread
import bentoml
from bentoml.exceptions import BadInput, NotFound, ServiceUnavailable
from fastapi import FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from threadpoolctl import threadpool_limits

from features.pit.repurchase import RepurchaseCycles
from patron.config import Settings, load_settings
from serving.champions.load import Champions, load_champions
from serving.answers.churn_table import ChurnTable, ExtrasTable
from serving.answers import recommendations
from serving.dashboard import view as dashboard
from serving.answers.alerts import AlertDispatcher
from serving.access.auth import AccessControl
from serving.online.erasure import ErasedCustomers, erase_customers
from serving.online.events import validate_events, validate_signals
from serving.answers.live_churn import LiveChurn, new_signals
from serving.online.store import OnlineStore, open_store
from serving.champions.reload import ChampionWatcher
from serving.answers.retention_plan import CustomerValue, load_customer_value, plan_for
from serving.openapi_errors import declare_error_responses, error_responses
from serving.answers.rules import RuleBook
from serving.schemas import (AlertsResponse, ChurnRequest, ChurnResponse, EventsRequest, EventsResponse, ModelStatus,
                             RecommendRequest, RecommendResponse, SimilarItemsRequest, SimilarItemsResponse,
                             StatusResponse, StockRequest, StockResponse)
from serving.schemas import EraseRequest, EraseResponse, RetentionPlanRequest, RetentionPlanResponse
from serving.server import bentoml_options
from serving.online.state import OnlineState

# A child of BentoML's logger, so messages land in the server log with BentoML's formatting.
logger = logging.getLogger("bentoml.patron")

# Read at import: BentoML needs the worker count when the class is decorated ($PATRON_CONFIG, $PATRON_HOME).
SETTINGS = load_settings()


def load_online_state(settings: Settings, store: OnlineStore | None = None) -> OnlineState:
    """The online state from the workspace tables and the current customer features, live data from `store`."""
    from features.pit.build import customer_features, data_end

    return OnlineState.from_workspace(settings, customer_features(settings, data_end(settings)), store)


def release_pooled_memory() -> None:
    """Give back what the allocators kept after loading: Arrow's pool holds freed buffers for reuse (about 1.2 GB per
    worker at 100,000 customers, read once at load and never again), glibc's heap the loaders' freed temporaries
    (about 160 MB there)."""
    import ctypes
    import ctypes.util

    import pyarrow as pa

    pa.default_memory_pool().release_unused()
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    if libc is not None and hasattr(libc, "malloc_trim"):  # glibc only
        libc.malloc_trim(0)


# Plain GET routes (BentoML APIs are POST only), mounted passively: only these paths reach it.
http_api = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
declare_error_responses()  # the OpenAPI document declares every error status in the shape it is sent


@bentoml.asgi_app(http_api, path="/")
@bentoml.service(name="patron", workers=SETTINGS.serving.workers,
                 traffic={"timeout": SETTINGS.serving.request_timeout_s}, **bentoml_options(SETTINGS))
class Patron:
    """Patron's online API; not ready until both champions and the online state are loaded."""

    def __init__(self) -> None:
        self.settings = SETTINGS
        # Multi-threaded BLAS in one request (the ALS scoring, the fold-in) costs several times the CPU for no gain.
        threadpool_limits(self.settings.serving.blas_threads, "blas")
        self.champions: Champions | None = None
        self.state: OnlineState | None = None
        self.store: OnlineStore | None = None
        self.erased: ErasedCustomers | None = None  # customers erased on any worker answer as unknown ones
        self.cycles: RepurchaseCycles | None = None
        self.rules = RuleBook(self.settings)
        self._churn_table: ChurnTable | None = None
        self._extras: ExtrasTable | None = None  # retention extras of every customer, with self.retention
        self._last_attempt = 0.0
        self._load_error = "loading"
        self._handler_thread = anyio.CapacityLimiter(1)  # larger requests: one at a time, as BentoML runs sync APIs
        self._lock = threading.Lock()
        self.retention: CustomerValue | None = None  # CLV, offer effects, segments when their models exist
        self._retention_error = "not loaded yet"
        self._board: tuple[object, dashboard.Dashboard] | None = None  # the dashboard of one churn champion
        self.live_churn = LiveChurn(self.settings, AlertDispatcher(self.settings))
        self.watcher = ChampionWatcher(self.settings, lambda: self.champions, self._swap_champions)
        self._try_load()
        if not self._load_retention():  # first try before serving; retries in the background, never in a request
            threading.Thread(target=self._retry_retention, name="retention-inputs", daemon=True).start()
        self.watcher.start()

    def _swap_champions(self, champions: Champions) -> None:
        if self.state is not None:
            self._churn_rows(champions, self.state)  # before the swap: no request pays for it
        self.champions = champions

    def _churn_rows(self, champions: Champions, state: OnlineState) -> ChurnTable:
        """The churn champion's answers for every customer with features (/churn looks customers up in it)."""
        table = self._churn_table
        if table is None or table.booster is not champions.churn:
            table = self._churn_table = ChurnTable(champions.churn, state.features.reset_index(drop=True),
                                                   self.settings.churn)
        return table

    def _try_load(self) -> None:
        """Load what is missing; failures are logged and leave the service not ready, never crash it."""
        with self._lock:
            self._last_attempt = time.monotonic()
            try:
                if self.champions is None:
                    self.champions = load_champions(self.settings)
                    logger.info("champions loaded: recommender v%s, churn v%s (source: %s)",
                                self.champions.recommender_version, self.champions.churn_version,
                                self.champions.churn_source)
                if self.store is None:
                    self.store = open_store(self.settings)
                    self.erased = ErasedCustomers(self.settings, self.store)
                if self.state is None:
                    self.cycles = RepurchaseCycles.from_workspace(self.settings)
                    self.state = load_online_state(self.settings, self.store)
                    logger.info("online state loaded: %d customers with features", len(self.state.features))
                if self.champions is not None and self.state is not None:
                    self._churn_rows(self.champions, self.state)
                    release_pooled_memory()
                    # The loaded models and state live as long as the worker: keep the collector from
                    # re-scanning them, which shows up as latency spikes.
                    gc.freeze()
            except Exception as exc:  # noqa: BLE001 - any failure just means "not ready yet"
                self._load_error = f"{type(exc).__name__}: {exc}"
                logger.warning("not ready: %s", self._load_error)

    def _loaded(self) -> bool:
        # The churn table too: a churn champion that cannot score the state's features must not look ready.
        return self.champions is not None and self.state is not None and self._churn_table is not None

    def __is_ready__(self) -> bool:
        if not self._loaded() and time.monotonic() - self._last_attempt >= self.settings.serving.champion_retry_s:
            self._try_load()
        return self._loaded()

    def _ready(self) -> tuple[Champions, OnlineState]:
        if not self._loaded():
            raise ServiceUnavailable(f"models are not loaded yet ({self._load_error[:300]}): promote a champion of "
                                     "each model, see /readyz")
        return self.champions, self.state

    def _check_k(self, k: int) -> None:
        if k > self.settings.serving.max_k:
            raise BadInput(f"k: must be at most {self.settings.serving.max_k}, got {k}")

    def _masked(self, customer_ids: list[str]) -> list[str]:
        """The ids with erased customers replaced by an id nobody has (one cheap online-store read)."""
        return customer_ids if self.erased is None else self.erased.masked(customer_ids)

    def _without_erased(self, events: list, signals: dict) -> tuple[list, dict]:
        """Valid events and signals less those of erased customers: they are acknowledged, never stored."""
        ids = [r["customer_id"] for r in events] + [r["customer_id"] for good, _ in signals.values() for r in good]
        gone = self.erased.among(ids) if self.erased is not None and ids else set()
        if not gone:
            return events, signals
        return ([e for e in events if e["customer_id"] not in gone],
                {kind: ([r for r in good if r["customer_id"] not in gone], bad)
                 for kind, (good, bad) in signals.items()})

    async def _run(self, handler: Callable[[Any], Any], request: Any, rows: int) -> Any:
        """Run a handler on the worker's event loop when the request is small (no hand-off to a thread and back,
        whose GIL waits were most of the tail), else on the worker's handler thread (health checks stay answered)."""
        if rows <= self.settings.serving.inline_max_rows:
            return handler(request)
        return await anyio.to_thread.run_sync(handler, request, limiter=self._handler_thread)

    @bentoml.api(route="/recommend")
    async def recommend(self, request: RecommendRequest, /) -> RecommendResponse:
        """Top-k items for a customer (popular items when not personalised)."""
        return await self._run(self._recommend, request, 1 + len(request.context_item_ids or []))

    def _recommend(self, request: RecommendRequest) -> RecommendResponse:
        self._check_k(request.k)
        champions, state = self._ready()
        customer = self._masked([request.customer_id])[0]
        answer = recommendations.recommend(champions.recommender, state, customer, request.k,
                                           request.exclude_purchased, request.categories, request.context_item_ids,
                                           self.rules.current(), self.settings, self.cycles)
        return RecommendResponse(customer_id=request.customer_id, items=answer.items,
                                 model_version=champions.recommender_version, fallback=answer.fallback,
                                 rules_applied=answer.rules_applied, source=answer.source)

    @bentoml.api(route="/events")
    async def events(self, request: EventsRequest, /) -> EventsResponse:
        """Record live events, tickets and survey answers (idempotent, committed before the answer); bad rows are
        listed. Service signals rescore the customer's churn risk and may raise an alert (see GET /alerts)."""
        signals = bool(request.tickets or request.surveys)  # rescoring churn: on the thread
        return await self._run(self._events, request, len(request.events) + (1 << 30) * signals)

    def _events(self, request: EventsRequest) -> EventsResponse:
        champions, state = self._ready()
        valid, rejected = validate_events(request.events, state.category_of)
        signals = {kind: validate_signals(kind, rows) for kind, rows in
                   (("tickets", request.tickets), ("surveys", request.surveys))}
        valid, signals = self._without_erased(valid, signals)
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
            alerts = self.live_churn.on_signals(champions.churn, champions.churn_version, state, new,
                                                self._best_offer)
        except Exception as exc:  # noqa: BLE001
            logger.warning("churn rescoring after service signals failed: %s: %s", type(exc).__name__, exc)
        return EventsResponse(accepted=accepted, duplicates=duplicates, rejected=rejected, alerts=alerts)

    def _best_offer(self, customer_id: str) -> dict | None:
        """The customer's best retention offer once the plan's inputs are loaded (None before, or without one)."""
        value = self.retention
        return None if value is None else value.customer_extras([customer_id], self.settings.retention.offers)[0].get(
            "best_offer")

    def _dashboard(self) -> "dashboard.Dashboard":
        """The dashboard's data for the serving churn champion (built on first use after each swap)."""
        champions, state = self._ready()
        board = self._board
        if board is None or board[0] is not champions.churn or (board[1].retention_note and self.retention):
            from features.pit.build import data_end

            built = dashboard.build_dashboard(self.settings, champions.churn, champions.churn_version,
                                              state.features.reset_index(drop=True), data_end(self.settings),
                                              self.retention, self._retention_error)
            board = self._board = (champions.churn, built)
        return board[1]

    # Plain FastAPI routes: BentoML's exceptions would become 500s here, so errors are answered as JSON directly.
    @http_api.get("/dashboard", response_class=HTMLResponse, responses=error_responses())
    def dashboard_page(self, segment: str = Query(None), tier: str = Query(None)) -> Response:
        """GET /dashboard: at-risk customers (filters: segment, tier), segments and the plan's value vs budget."""
        try:
            board = self._dashboard()
        except ServiceUnavailable as exc:
            return JSONResponse({"error": str(exc)}, status_code=503)
        hidden = self.erased.among(board.rows["customer_id"].tolist()) if self.erased is not None else set()
        return HTMLResponse(dashboard.render_page(board, self.settings, segment, tier, hidden))

    # A path Starlette cannot route answers its own plain-text 404.
    @http_api.get("/dashboard/customer/{customer_id}", response_class=HTMLResponse, responses={
        **error_responses(), 404: {**error_responses()[404], "content": {
            **error_responses()[404]["content"], "text/plain": {"schema": {"type": "string"}}}}})
    def dashboard_customer(self, customer_id: str) -> Response:
        """GET /dashboard/customer/ID: one listed customer's reasons, CLV, offer and recent history."""
        try:
            board = self._dashboard()
        except ServiceUnavailable as exc:
            return JSONResponse({"error": str(exc)}, status_code=503)
        customer = self._masked([customer_id])[0]
        html = dashboard.render_customer(board, customer,
                                         self.state.live_events(customer, self.settings.dashboard.history))
        if html is None:
            return JSONResponse({"error": f"customer_id: {customer_id!r} is not on the dashboard's at-risk list"},
                                status_code=404)
        return HTMLResponse(html)

    @http_api.get("/dashboard/login", response_class=HTMLResponse)
    def dashboard_login_form(self) -> HTMLResponse:
        """GET /dashboard/login: the form that stores an API key in the dashboard's cookie."""
        return HTMLResponse(dashboard.render_login())

    @http_api.post("/dashboard/login", response_model=None,
                   responses={400: {"description": "api_key missing", "content": {"text/html": {}}},
                              303: {"description": "logged in: back to /dashboard"}})
    async def dashboard_login(self, request: Request) -> RedirectResponse:
        """POST /dashboard/login (form field api_key): sets the HttpOnly, SameSite=Strict cookie, back to /dashboard."""
        from serving.access.auth import COOKIE

        key = str((await request.form()).get("api_key", "")).strip()
        if not key:
            return HTMLResponse(dashboard.render_login("api_key: enter your API key"), status_code=400)
        answer = RedirectResponse("/dashboard", status_code=303)
        answer.set_cookie(COOKIE, key, httponly=True, samesite="strict", secure=request.url.scheme == "https")
        return answer

    # `since` is declared a plain optional date-time: a query string cannot carry the `null` of `datetime | None`.
    @http_api.get("/alerts", responses=error_responses())
    def alerts(self, since: datetime = Query(None), limit: int = Query(100, ge=1)) -> AlertsResponse:
        """GET /alerts?since=&limit=: churn alerts raised at or after `since` (UTC), oldest first, with delivery."""
        limit = min(limit, self.settings.alerts.max_list)
        if since is not None and since.tzinfo:
            try:
                since = since.astimezone(timezone.utc).replace(tzinfo=None)
            except OverflowError:  # before the first (or after the last) representable instant once in UTC
                since = datetime.min if since.year == datetime.min.year else datetime.max
        return AlertsResponse(alerts=self.live_churn.dispatcher.log.alerts(since, limit))

    @bentoml.api(route="/items/stock")
    def items_stock(self, request: StockRequest, /) -> StockResponse:
        """Set items in or out of stock for every worker, effective from the next request."""
        _, state = self._ready()
        rejected = [{"index": n, "kind": "items",
                     "reason": f"item_id: unknown item (not in products), got {u.item_id!r}"}
                    for n, u in enumerate(request.items) if u.item_id not in state.category_of]
        known = {u.item_id: u.in_stock for u in request.items if u.item_id in state.category_of}
        if known:
            state.store.set_stock(known)
        return StockResponse(updated=len(known), rejected=rejected)

    @bentoml.api(route="/status")
    def status(self) -> StatusResponse:
        """Which model versions serve, what the registry says, reload errors and the rules in force."""
        champions = self.champions
        serving = {"recommender": champions and champions.recommender_version,
                   "churn": champions and champions.churn_version}
        models = [ModelStatus(model=m, serving_version=serving[m], registry_version=st.registry_version,
                              last_error=st.last_error, last_checked=st.last_checked,
                              source=champions and getattr(champions, f"{m}_source"))
                  for m, st in self.watcher.status.items()]
        return StatusResponse(ready=self._loaded(), worker_pid=os.getpid(),
                              models=models,
                              rules=self.rules.current().model_dump(), rules_error=self.rules.error,
                              online_backend=self.settings.online.backend)

    @bentoml.api(route="/similar_items")
    async def similar_items(self, request: SimilarItemsRequest, /) -> SimilarItemsResponse:
        """Top-k in-stock items similar to an item."""
        return await self._run(self._similar_items, request, 1)

    def _similar_items(self, request: SimilarItemsRequest) -> SimilarItemsResponse:
        self._check_k(request.k)
        champions, state = self._ready()
        if not champions.recommender.knows_item(request.item_id):
            raise NotFound(f"item_id {request.item_id!r} is unknown to recommender version "
                           f"{champions.recommender_version}")
        items = recommendations.similar_items(champions.recommender, state, request.item_id, request.k)
        return SimilarItemsResponse(item_id=request.item_id, items=items,
                                    model_version=champions.recommender_version)

    @bentoml.api(route="/churn")
    async def churn(self, request: ChurnRequest, /) -> ChurnResponse:
        """Churn probability, risk tier and top reasons per customer (known=false for unknown ones)."""
        return await self._run(self._churn, request, len(request.customer_ids))

    def _churn(self, request: ChurnRequest) -> ChurnResponse:
        if len(request.customer_ids) > self.settings.serving.max_batch:
            raise BadInput(f"customer_ids: at most {self.settings.serving.max_batch} ids per request")
        champions, state = self._ready()
        ids = self._masked(request.customer_ids)
        scores = self._churn_rows(champions, state).scores(ids)
        extras = self._extras
        if extras is not None:
            scores = [{**s, **extra} for s, extra in zip(scores, extras.extras(ids))]
        scores = [{**s, "customer_id": c} for s, c in zip(scores, request.customer_ids)]
        return ChurnResponse(scores=scores, model_version=champions.churn_version)

    def _load_retention(self) -> bool:
        """Load CLV, offer effects and segments of the state's customers; False (reason kept) until their models exist."""
        if self.retention is not None:
            return True
        if self.state is None:
            return False
        from features.pit.build import data_end

        try:
            features = self.state.features.reset_index(drop=True)
            value = load_customer_value(self.settings, features, data_end(self.settings))
            self._extras = ExtrasTable(lambda ids: value.customer_extras(ids, self.settings.retention.offers),
                                       features["customer_id"].astype(str))
            self.retention = value
            release_pooled_memory()
        except Exception as exc:  # noqa: BLE001 - /churn answers without the extras meanwhile
            self._retention_error = f"{type(exc).__name__}: {exc}"
            logger.warning("retention plan not available: %s", self._retention_error)
            return False
        logger.info("retention inputs loaded: clv v%s, uplift v%s", self.retention.clv_version,
                    self.retention.uplift_version)
        return True

    def _retry_retention(self) -> None:
        # A failed attempt can cost seconds of a serving worker's CPU (CLV and offer effects of every customer):
        # back off instead of retrying at a fixed pace.
        wait = self.settings.serving.champion_retry_s
        while not self._load_retention():
            time.sleep(wait)
            wait = min(2 * wait, self.settings.serving.retention_retry_max_s)

    @bentoml.api(route="/retention/plan")
    def retention_plan(self, request: RetentionPlanRequest, /) -> RetentionPlanResponse:
        """At most one offer per consenting active customer, maximising expected net value within the budget."""
        champions, state = self._ready()
        value = self.retention
        if value is None:
            raise ServiceUnavailable(f"retention plan unavailable: {self._retention_error}")
        offers = None if request.offers is None else [o.model_dump() for o in request.offers]
        try:
            active = state.customer_features(self._masked(sorted(value.active)))
            plan = plan_for(self.settings, champions.churn, active, value, offers, request.budget,
                            request.max_customers)
        except ValueError as exc:
            raise BadInput(str(exc)) from exc
        rows = plan.rows.astype(object).where(plan.rows.notna(), None).to_dict(orient="records")
        return RetentionPlanResponse(plan=rows, totals=plan.totals(), model_versions={
            "churn": champions.churn_version, "clv": value.clv_version, "uplift": value.uplift_version})

    @bentoml.api(route="/admin/erase")
    def admin_erase(self, request: EraseRequest, /) -> EraseResponse:
        """Right to be forgotten: erase customers from the workspace, the online store and the alerts log; every
        worker answers for them as for unknown customers from the next request on."""
        self._ready()
        try:
            report = erase_customers(self.settings, request.customer_ids, self.store)
        except ValueError as exc:
            raise BadInput(str(exc)) from exc
        logger.info("erased %d customers (%d new)", report.customers, report.newly_erased)
        return EraseResponse(customers=report.customers, newly_erased=report.newly_erased,
                             workspace_rows_removed=sum(report.rows_removed.values()),
                             workspace_files_changed=len(report.rows_removed),
                             online_rows_removed=report.online_rows_removed, alerts_removed=report.alerts_removed)


# API key, scope, rate and body size checked before every handler (serving/access/auth.py holds the route -> scope map).
Patron.add_asgi_middleware(AccessControl, settings=SETTINGS)
