"""The dashboard off the request path: its data and every filtered page are built at load, and again in the background
when the churn champion or the retention inputs change; a request only reads what is there (the previous build keeps
answering while the next one runs)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from features.pit.segments import LIFECYCLE_STAGES
from patron.config import Settings
from serving.answers.retention_plan import CustomerValue
from serving.dashboard import view

logger = logging.getLogger("bentoml.patron")
MAX_HIDDEN_PAGES = 64  # pages rendered on request (offer, channel, erased customers), kept until the next build


@dataclass(frozen=True)
class DashboardInputs:
    """What one build reads: the churn champion, the state's features, the retention inputs when loaded."""

    booster: Any
    churn_version: str
    features: pd.DataFrame
    cutoff: pd.Timestamp
    retention: CustomerValue | None
    retention_error: str


@dataclass
class _Built:
    booster: Any  # the churn champion it was built for
    with_retention: bool
    board: view.Dashboard
    pages: dict[tuple[str, str], str]  # (segment, tier) -> the page, "" for no filter
    on_request_pages: dict[tuple[str, str, str, str, frozenset[str]], str] = field(default_factory=dict)


def filter_values(settings: Settings) -> tuple[list[str], list[str]]:
    """The lifecycle stages and risk tiers the page filters on (what GET /dashboard's segment and tier accept)."""
    return list(LIFECYCLE_STAGES), [t for t, _ in sorted(settings.churn.risk_tiers.items(), key=lambda kv: -kv[1])]


class DashboardCache:
    """One worker's dashboard: built by `refresh` (in a background thread) and read by `page` and `customer`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._built: _Built | None = None
        self._lock = threading.Lock()  # one build at a time
        self.error: str | None = None  # why the last build failed

    def stale(self, inputs: DashboardInputs) -> bool:
        """Whether the current build is not for these inputs (another churn champion, or retention newly loaded)."""
        built = self._built
        if built is None or built.booster is not inputs.booster:
            return True
        return inputs.retention is not None and not built.with_retention

    def build(self, inputs: DashboardInputs) -> None:
        """Build the board and every filtered page for `inputs`, then swap them in (the caller's thread)."""
        with self._lock:
            if not self.stale(inputs):
                return
            try:
                board = view.build_dashboard(
                    self.settings,
                    inputs.booster,
                    inputs.churn_version,
                    inputs.features,
                    inputs.cutoff,
                    inputs.retention,
                    inputs.retention_error,
                )
                stages, tiers = filter_values(self.settings)
                pages = {
                    (s, t): view.render_page(board, self.settings, s, t) for s in ["", *stages] for t in ["", *tiers]
                }
            except Exception as exc:  # noqa: BLE001 - the previous build keeps answering
                self.error = f"{type(exc).__name__}: {exc}"
                logger.warning("dashboard build failed: %s", self.error)
                return
            self._built = _Built(inputs.booster, inputs.retention is not None, board, pages)
            self.error = None
            logger.info("dashboard built for churn v%s (%d at-risk customers)", inputs.churn_version, len(board.rows))

    def refresh(self, inputs: Callable[[], DashboardInputs | None]) -> None:
        """Rebuild in a background thread from what `inputs()` gives then (None: nothing to build yet)."""

        def run() -> None:
            current = inputs()
            if current is not None and self.stale(current):
                self.build(current)

        threading.Thread(target=run, name="dashboard-build", daemon=True).start()

    def page(self, segment: str, tier: str, hidden: set[str], offer: str = "", channel: str = "") -> str | None:
        """The page filtered by `segment`, `tier`, `offer` and `channel` ("" for all) without the `hidden` customers;
        None before the first build. Pages by segment and tier are rendered with the build; the rarer offer, channel
        and erased-customer variants once on first request, kept until the next build."""
        built = self._built
        if built is None:
            return None
        if not hidden and not offer and not channel:
            return built.pages[(segment, tier)]
        key = (segment, tier, offer, channel, frozenset(hidden))
        page = built.on_request_pages.get(key)
        if page is None:
            page = view.render_page(built.board, self.settings, segment, tier, hidden, offer, channel)
            if len(built.on_request_pages) >= MAX_HIDDEN_PAGES:
                built.on_request_pages.clear()
            built.on_request_pages[key] = page
        return page

    def board(self) -> view.Dashboard | None:
        """The current board (None before the first build)."""
        built = self._built
        return None if built is None else built.board
