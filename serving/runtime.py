"""One serving worker's runtime: its settings, read when the worker starts; the champions and the online state,
loaded and retried until ready; the retention inputs, retried with back-off; pooled memory given back after loading;
the champion watcher that swaps in promoted versions."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pyarrow as pa
from bentoml.exceptions import ServiceUnavailable

from features.pit.build import customer_features, data_end
from features.pit.repurchase import RepurchaseCycles
from patron.config import Settings, load_settings
from serving.access.auth import AccessControl
from serving.answers.churn_table import ChurnTable, ExtrasTable
from serving.answers.erasure import ErasedCustomers
from serving.answers.retention_plan import CustomerValue, load_customer_value
from serving.champions.load import Champions, load_champions
from serving.champions.reload import ChampionWatcher
from serving.online.backend import open_store
from serving.online.state import OnlineState
from serving.online.store import OnlineStore

# A child of BentoML's logger, so messages land in the server log with BentoML's formatting.
logger = logging.getLogger("bentoml.patron")


@functools.cache
def worker_settings() -> Settings:
    """This worker's settings ($PATRON_CONFIG, $PATRON_HOME), read once, when the worker starts."""
    return load_settings()


def access_control(app: Any) -> AccessControl:
    """The access-control middleware around `app` with this worker's settings (BentoML builds it in each worker)."""
    return AccessControl(app, settings=worker_settings())


def load_online_state(settings: Settings, store: OnlineStore | None = None) -> OnlineState:
    """The online state from the workspace tables and the current customer features, live data from `store`."""
    return OnlineState.from_workspace(settings, customer_features(settings, data_end(settings)), store)


def release_pooled_memory() -> None:
    """Give back what the allocators kept after loading: Arrow's pool holds freed buffers for reuse (about 1.2 GB per
    worker at 100,000 customers, read once at load and never again), glibc's heap the loaders' freed temporaries
    (about 160 MB there)."""
    pa.default_memory_pool().release_unused()
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    if libc is not None and hasattr(libc, "malloc_trim"):  # glibc only
        libc.malloc_trim(0)


class Runtime:
    """What one worker answers from: champions, online state and store, erasures and retention inputs. Loading
    failures leave it not ready (retried), never crash the worker."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.champions: Champions | None = None
        self.state: OnlineState | None = None
        self.store: OnlineStore | None = None
        self.erased: ErasedCustomers | None = None  # customers erased on any worker answer as unknown ones
        self.cycles: RepurchaseCycles | None = None
        self.retention: CustomerValue | None = None  # CLV, offer effects, segments when their models exist
        self.retention_error = "not loaded yet"
        self.extras: ExtrasTable | None = None  # retention extras of every customer, with self.retention
        self._churn_table: ChurnTable | None = None
        self._load_error = "loading"
        self._last_attempt = 0.0
        self._lock = threading.Lock()
        self.watcher = ChampionWatcher(settings, lambda: self.champions, self._swap_champions)
        self._listeners: list[Callable[[], None]] = []

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call `listener` (quickly: it runs in the loader's thread) once loaded, after each champion swap and once the
        retention inputs load."""
        self._listeners.append(listener)

    def _changed(self) -> None:
        for listener in self._listeners:
            try:
                listener()
            except Exception as exc:  # noqa: BLE001 - a listener's failure must not fail the load
                logger.warning("change listener failed: %s: %s", type(exc).__name__, exc)

    def start(self) -> None:
        """Load what can be loaded, retry the retention inputs in the background if they fail, start the watcher."""
        self._try_load()
        if not self._load_retention():  # first try before serving; retries in the background, never in a request
            threading.Thread(target=self._retry_retention, name="retention-inputs", daemon=True).start()
        self.watcher.start()

    def stop(self) -> None:
        """Stop the champion watcher and close the online store."""
        self.watcher.stop()
        if self.store is not None:
            self.store.close()

    def loaded(self) -> bool:
        """Whether both champions, the online state and the churn table are loaded."""
        # The churn table too: a churn champion that cannot score the state's features must not look ready.
        return self.champions is not None and self.state is not None and self._churn_table is not None

    def is_ready(self) -> bool:
        """Whether loaded; when not, load again if the last try is `serving.champion_retry_s` old."""
        if not self.loaded() and time.monotonic() - self._last_attempt >= self.settings.serving.champion_retry_s:
            self._try_load()
        return self.loaded()

    def ready(self) -> tuple[Champions, OnlineState]:
        """The champions and the online state, or a 503 naming why they are not loaded."""
        if not self.loaded():
            raise ServiceUnavailable(
                f"models are not loaded yet ({self._load_error[:300]}): promote a champion of each model, see /readyz"
            )
        return self.champions, self.state

    def churn_rows(self, champions: Champions, state: OnlineState) -> ChurnTable:
        """The churn champion's answers for every customer with features (/churn looks customers up in it)."""
        table = self._churn_table
        if table is None or table.booster is not champions.churn:
            table = self._churn_table = ChurnTable(
                champions.churn, state.features.reset_index(drop=True), self.settings.churn
            )
        return table

    def masked(self, customer_ids: list[str]) -> list[str]:
        """The ids with erased customers replaced by an id nobody has (one cheap online-store read)."""
        return customer_ids if self.erased is None else self.erased.masked(customer_ids)

    def without_erased(self, events: list, signals: dict) -> tuple[list, dict]:
        """Valid events and signals less those of erased customers: they are acknowledged, never stored."""
        ids = [r["customer_id"] for r in events] + [r["customer_id"] for good, _ in signals.values() for r in good]
        gone = self.erased.among(ids) if self.erased is not None and ids else set()
        if not gone:
            return events, signals
        return (
            [e for e in events if e["customer_id"] not in gone],
            {kind: ([r for r in good if r["customer_id"] not in gone], bad) for kind, (good, bad) in signals.items()},
        )

    def best_offer(self, customer_id: str) -> dict | None:
        """The customer's best retention offer once the plan's inputs are loaded (None before, or without one)."""
        value = self.retention
        return (
            None
            if value is None
            else value.customer_extras([customer_id], self.settings.retention.offers)[0].get("best_offer")
        )

    def _swap_champions(self, champions: Champions) -> None:
        if self.state is not None:
            self.churn_rows(champions, self.state)  # before the swap: no request pays for it
        self.champions = champions
        self._changed()

    def _try_load(self) -> None:
        """Load what is missing; failures are logged and leave the worker not ready."""
        with self._lock:
            self._last_attempt = time.monotonic()
            try:
                if self.champions is None:
                    self.champions = load_champions(self.settings)
                    logger.info(
                        "champions loaded: recommender v%s, churn v%s (source: %s)",
                        self.champions.recommender_version,
                        self.champions.churn_version,
                        self.champions.churn_source,
                    )
                if self.store is None:
                    self.store = open_store(self.settings)
                    self.erased = ErasedCustomers(self.settings, self.store)
                if self.state is None:
                    self.cycles = RepurchaseCycles.from_workspace(self.settings)
                    self.state = load_online_state(self.settings, self.store)
                    logger.info("online state loaded: %d customers with features", len(self.state.features))
                if self.champions is not None and self.state is not None:
                    newly = self._churn_table is None
                    self.churn_rows(self.champions, self.state)
                    release_pooled_memory()
                    # The loaded models and state live as long as the worker: keep the collector from
                    # re-scanning them, which shows up as latency spikes.
                    gc.freeze()
                    if newly:
                        self._changed()
            except Exception as exc:  # noqa: BLE001 - any failure just means "not ready yet"
                self._load_error = f"{type(exc).__name__}: {exc}"
                logger.warning("not ready: %s", self._load_error)

    def _load_retention(self) -> bool:
        """Load CLV, offer effects and segments of the state's customers; False (reason kept) until they load."""
        if self.retention is not None:
            return True
        if self.state is None:
            return False
        try:
            features = self.state.features.reset_index(drop=True)
            value = load_customer_value(self.settings, features, data_end(self.settings))
            self.extras = ExtrasTable(
                lambda ids: value.customer_extras(ids, self.settings.retention.offers),
                features["customer_id"].astype(str),
            )
            self.retention = value
            release_pooled_memory()
        except Exception as exc:  # noqa: BLE001 - /churn answers without the extras meanwhile
            self.retention_error = f"{type(exc).__name__}: {exc}"
            logger.warning("retention plan not available: %s", self.retention_error)
            return False
        logger.info(
            "retention inputs loaded: clv v%s, uplift v%s", self.retention.clv_version, self.retention.uplift_version
        )
        self._changed()
        return True

    def _retry_retention(self) -> None:
        # A failed attempt can cost seconds of a serving worker's CPU (CLV and offer effects of every customer):
        # back off instead of retrying at a fixed pace.
        wait = self.settings.serving.champion_retry_s
        while not self._load_retention():
            time.sleep(wait)
            wait = min(2 * wait, self.settings.serving.retention_retry_max_s)
