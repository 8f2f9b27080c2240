"""The dashboard's pages as the routes answer them: built off the request path (serving/dashboard/cache.py), rendered
on the dashboard's own thread, errors answered as JSON (plain FastAPI routes would turn BentoML's exceptions into
500s)."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import anyio.to_thread
from bentoml.exceptions import ServiceUnavailable
from fastapi.responses import HTMLResponse, JSONResponse, Response

from features.pit.build import data_end
from features.tables.campaigns import list_campaigns
from patron.config import Settings
from serving.answers.campaigns import campaign_answer
from serving.dashboard import campaigns_view
from serving.dashboard import view as dashboard
from serving.dashboard.cache import DashboardCache, DashboardInputs, filter_values
from serving.runtime import Runtime


class DashboardPages:
    """One worker's dashboard pages: one request at a time on a thread of their own, so twenty at once queue among
    themselves, not ahead of /recommend."""

    def __init__(self, settings: Settings, runtime: Runtime) -> None:
        self.settings = settings
        self.runtime = runtime
        self.cache = DashboardCache(settings)  # built at load and in the background, never in a request
        self._thread = anyio.CapacityLimiter(1)

    def start(self) -> None:
        """Build the board now (before serving), and again in the background on each later change."""
        self.runtime.on_change(lambda: self.cache.refresh(self.inputs))
        inputs = self.inputs()
        if inputs is not None:
            self.cache.build(inputs)

    def inputs(self) -> DashboardInputs | None:
        """What the dashboard is built from now (None until the champions and the online state are loaded)."""
        champions, state = self.runtime.champions, self.runtime.state
        if champions is None or state is None:
            return None
        return DashboardInputs(
            champions.churn,
            champions.churn_version,
            state.features.reset_index(drop=True),
            data_end(self.settings),
            self.runtime.retention,
            self.runtime.retention_error,
        )

    async def run(self, page: Callable[..., Response], *args: str) -> Response:
        """Answer `page(*args)` on the dashboard's thread."""
        return await anyio.to_thread.run_sync(page, *args, limiter=self._thread)

    def _unavailable(self) -> JSONResponse:
        why = self.cache.error or "being built"
        return JSONResponse({"error": f"dashboard not available yet ({why}): retry shortly"}, status_code=503)

    def main(self, segment: str, tier: str, offer: str, channel: str) -> Response:
        """The main page, filtered (400 naming a segment or tier the page does not have)."""
        stages, tiers = filter_values(self.settings)
        for name, value, allowed in (("segment", segment, stages), ("tier", tier, tiers)):
            if value and value not in allowed:
                return JSONResponse({"error": f"{name}: expected one of {allowed} (or empty), got {value!r}"}, 400)
        board = self.cache.board()
        if board is None:
            return self._unavailable()
        erased = self.runtime.erased
        hidden = erased.among(board.listed_ids()) if erased is not None else set()
        return HTMLResponse(self.cache.page(segment, tier, hidden, offer, channel))

    def campaigns(self, campaign: str) -> Response:
        """The campaigns, one readout (404 for an unknown id) and the loyalty KPIs."""
        try:
            _, state = self.runtime.ready()
        except ServiceUnavailable as exc:
            return JSONResponse({"error": str(exc)}, status_code=503)
        try:
            readout = campaign_answer(self.settings, campaign) if campaign else None
        except LookupError as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)
        features = state.features.reset_index(drop=True)
        listed = list_campaigns(self.settings.campaigns_dir)
        return HTMLResponse(
            campaigns_view.campaigns_page(self.settings, features, data_end(self.settings), listed, readout)
        )

    def customer(self, customer_id: str) -> Response:
        """One listed customer's page (404 for a customer not on the lists)."""
        board = self.cache.board()
        if board is None:
            return self._unavailable()
        customer = self.runtime.masked([customer_id])[0]
        html = dashboard.render_customer(
            board, customer, self.runtime.state.live_events(customer, self.settings.dashboard.history)
        )
        if html is None:
            return JSONResponse(
                {"error": f"customer_id: {customer_id!r} is not on the dashboard's at-risk list"}, status_code=404
            )
        return HTMLResponse(html)
