"""The BentoML service `Patron`: recommendations, similar items and churn scores from the registry champions."""

from __future__ import annotations

import logging
import os
import threading
import time

import bentoml
from bentoml.exceptions import BadInput, NotFound, ServiceUnavailable

from patron.config import Settings, load_settings
from serving.champions import Champions, load_champions
from serving.churn_scoring import score_customers
from serving import recommendations
from serving.events import validate_events
from serving.online_store import OnlineStore, open_store
from serving.reload import ChampionWatcher
from serving.rules import RuleBook
from serving.schemas import (ChurnRequest, ChurnResponse, EventsRequest, EventsResponse, ModelStatus,
                             RecommendRequest, RecommendResponse, SimilarItemsRequest, SimilarItemsResponse,
                             StatusResponse, StockRequest, StockResponse)
from serving.state import OnlineState

# A child of BentoML's logger, so messages land in the server log with BentoML's formatting.
logger = logging.getLogger("bentoml.patron")

# Read at import: BentoML needs the worker count when the class is decorated ($PATRON_CONFIG, $PATRON_HOME).
SETTINGS = load_settings()


def load_online_state(settings: Settings, store: OnlineStore | None = None) -> OnlineState:
    """The online state from the workspace tables and the current customer features, live data from `store`."""
    from features.build import customer_features, data_end

    return OnlineState.from_workspace(settings, customer_features(settings, data_end(settings)), store)


@bentoml.service(name="patron", workers=SETTINGS.serving.workers,
                 traffic={"timeout": SETTINGS.serving.request_timeout_s})
class Patron:
    """Patron's online API; not ready until both champions and the online state are loaded."""

    def __init__(self) -> None:
        self.settings = SETTINGS
        self.champions: Champions | None = None
        self.state: OnlineState | None = None
        self.store: OnlineStore | None = None
        self.rules = RuleBook(self.settings)
        self._last_attempt = 0.0
        self._lock = threading.Lock()
        self.watcher = ChampionWatcher(self.settings, lambda: self.champions, self._swap_champions)
        self._try_load()
        self.watcher.start()

    def _swap_champions(self, champions: Champions) -> None:
        self.champions = champions

    def _try_load(self) -> None:
        """Load what is missing; failures are logged and leave the service not ready, never crash it."""
        with self._lock:
            self._last_attempt = time.monotonic()
            try:
                if self.champions is None:
                    self.champions = load_champions(self.settings)
                    logger.info("champions loaded: recommender v%s, churn v%s",
                                self.champions.recommender_version, self.champions.churn_version)
                if self.store is None:
                    self.store = open_store(self.settings)
                if self.state is None:
                    self.state = load_online_state(self.settings, self.store)
                    logger.info("online state loaded: %d customers with features", len(self.state.features))
            except Exception as exc:  # noqa: BLE001 - any failure just means "not ready yet"
                logger.warning("not ready: %s: %s", type(exc).__name__, exc)

    def __is_ready__(self) -> bool:
        if self.champions is None or self.state is None:
            if time.monotonic() - self._last_attempt >= self.settings.serving.champion_retry_s:
                self._try_load()
        return self.champions is not None and self.state is not None

    def _ready(self) -> tuple[Champions, OnlineState]:
        if self.champions is None or self.state is None:
            raise ServiceUnavailable("models are not loaded yet: promote a champion of each model, see /readyz")
        return self.champions, self.state

    def _check_k(self, k: int) -> None:
        if k > self.settings.serving.max_k:
            raise BadInput(f"k: must be at most {self.settings.serving.max_k}, got {k}")

    @bentoml.api(route="/recommend")
    def recommend(self, request: RecommendRequest, /) -> RecommendResponse:
        """Top-k items for a customer (popular items when not personalised)."""
        self._check_k(request.k)
        champions, state = self._ready()
        answer = recommendations.recommend(champions.recommender, state, request.customer_id, request.k,
                                           request.exclude_purchased, request.categories, request.context_item_ids,
                                           self.rules.current(), self.settings)
        return RecommendResponse(customer_id=request.customer_id, items=answer.items,
                                 model_version=champions.recommender_version, fallback=answer.fallback,
                                 rules_applied=answer.rules_applied, source=answer.source)

    @bentoml.api(route="/events")
    def events(self, request: EventsRequest, /) -> EventsResponse:
        """Record live events (idempotent by event_id, committed before the answer); bad rows are listed."""
        _, state = self._ready()
        valid, rejected = validate_events(request.events, state.category_of)
        try:
            accepted, duplicates = state.store.record_events(valid) if valid else (0, 0)
        except Exception as exc:  # noqa: BLE001 - nothing was acknowledged: the client must retry
            raise ServiceUnavailable(f"online store unavailable, events not recorded: {exc}") from exc
        return EventsResponse(accepted=accepted, duplicates=duplicates, rejected=rejected)

    @bentoml.api(route="/items/stock")
    def items_stock(self, request: StockRequest, /) -> StockResponse:
        """Set items in or out of stock for every worker, effective from the next request."""
        _, state = self._ready()
        rejected = [{"index": n, "reason": f"item_id: unknown item (not in products), got {u.item_id!r}"}
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
                              last_error=st.last_error, last_checked=st.last_checked)
                  for m, st in self.watcher.status.items()]
        return StatusResponse(ready=self.champions is not None and self.state is not None, worker_pid=os.getpid(),
                              models=models,
                              rules=self.rules.current().model_dump(), rules_error=self.rules.error,
                              online_backend=self.settings.online.backend)

    @bentoml.api(route="/similar_items")
    def similar_items(self, request: SimilarItemsRequest, /) -> SimilarItemsResponse:
        """Top-k in-stock items similar to an item."""
        self._check_k(request.k)
        champions, state = self._ready()
        if not champions.recommender.knows_item(request.item_id):
            raise NotFound(f"item_id {request.item_id!r} is unknown to recommender version "
                           f"{champions.recommender_version}")
        items = recommendations.similar_items(champions.recommender, state, request.item_id, request.k)
        return SimilarItemsResponse(item_id=request.item_id, items=items,
                                    model_version=champions.recommender_version)

    @bentoml.api(route="/churn")
    def churn(self, request: ChurnRequest, /) -> ChurnResponse:
        """Churn probability, risk tier and top reasons per customer (known=false for unknown ones)."""
        if len(request.customer_ids) > self.settings.serving.max_batch:
            raise BadInput(f"customer_ids: at most {self.settings.serving.max_batch} ids per request")
        champions, state = self._ready()
        scores = score_customers(champions.churn, state.customer_features(request.customer_ids),
                                 request.customer_ids, self.settings.churn)
        return ChurnResponse(scores=scores, model_version=champions.churn_version)
