"""GET /dashboard: the CRM manager's page (at-risk customers, segments, the retention plan's value vs budget),
server-rendered from the service's own scoring, segments and plan code, precomputed once per churn champion; and its
login form, which keeps the API key in a cookie."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from features.pit.segments import LIFECYCLE_STAGES, customer_segments
from features.tables.store import read_table
from patron.config import Settings
from serving.access.auth import COOKIE
from serving.answers.churn_scoring import active_customer_ids, score_population
from serving.answers.offer_allocation import allocate, candidate_pairs
from serving.answers.priority import LIKELY_LOST, PRIORITY_TEXT
from serving.answers.retention_plan import CustomerValue, parse_offers
from serving.dashboard.priority_view import listed_customers

ASSETS = Path(__file__).parent
_ENV = Environment(loader=FileSystemLoader(ASSETS), autoescape=select_autoescape(["html"]))
CHART_W, CHART_H, PAD = 360, 160, 30  # the value-vs-budget chart's size in SVG units
_BLANKS = " \t\r\n"
# The login form: an API key is printable ASCII (it goes into a cookie), blanks around it are ignored.
LOGIN_FORM = {
    "type": "object",
    "required": ["api_key"],
    "properties": {"api_key": {"type": "string", "pattern": r"^[ \t\r\n]*[!-~]+[ \t\r\n]*$"}},
}


@dataclass(frozen=True)
class Dashboard:
    """Everything the page shows, computed once for one churn champion."""

    churn_version: str
    rows: pd.DataFrame  # worth saving first (serving/answers/priority.py), else riskiest first: id, probability,
    # tier, stage, rfm, clv, offer, channel, priority, reasons
    rfm_grid: list[list[int]]  # customers by recency score (rows, 5 best first) x frequency score (columns)
    lifecycle: dict[str, int]
    budget_curve: list[tuple[float, float]]  # (budget, expected net value of the plan)
    history: dict[str, list[dict[str, Any]]]  # recent table events per listed customer, latest first
    retention_note: str | None  # why CLV, offers and the plan are missing (None when shown)
    likely_lost: pd.DataFrame | None = None  # riskiest first: no offer pays (None without the plan's inputs)

    def listed(self) -> pd.DataFrame:
        """Every customer on the page: the main table, then the likely lost."""
        return self.rows if self.likely_lost is None else pd.concat([self.rows, self.likely_lost], ignore_index=True)

    def listed_ids(self) -> list[str]:
        """Ids of every customer on the page."""
        return self.listed()["customer_id"].tolist()


def _budget_curve(settings: Settings, value: CustomerValue, churn_ids: pd.Index) -> list[tuple[float, float]]:
    """The plan's expected net value at evenly spaced budgets up to dashboard.budget (same allocation as /plan)."""
    offers = parse_offers(settings.retention.offers, value.offer_types())
    eligible = churn_ids.difference(list(value.marketing_refused))
    pairs = candidate_pairs(value.clv.reindex(eligible).dropna(), value.effects, offers)
    budgets = np.linspace(0.0, settings.dashboard.budget, settings.dashboard.budget_steps)
    return [(float(b), float(allocate(pairs, float(b), None, settings.retention).value)) for b in budgets]


def _recent_history(settings: Settings, ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    events = read_table(settings.tables_dir, "events", columns=["customer_id", "item_id", "ts", "type", "unit_price"])
    mine = events[events["customer_id"].astype(str).isin(set(ids))].sort_values("ts", ascending=False)
    latest = mine.groupby("customer_id", observed=True).head(settings.dashboard.history)
    latest = latest.assign(ts=latest["ts"].dt.strftime("%Y-%m-%d %H:%M"))
    latest = latest.astype(object).where(latest.notna(), None)
    return {
        str(c): g.drop(columns="customer_id").to_dict(orient="records")
        for c, g in latest.groupby("customer_id", observed=True)
    }


def build_dashboard(
    settings: Settings,
    booster: Any,
    churn_version: str,
    features: pd.DataFrame,
    cutoff: pd.Timestamp,
    value: CustomerValue | None,
    retention_error: str,
) -> Dashboard:
    """Score the active customers with the churn champion, join segments, CLV and best offers, chart the plan."""
    active = features[features["customer_id"].astype(str).isin(active_customer_ids(settings, cutoff))]
    scored = score_population(booster, active, settings.churn, settings.serving.max_batch, progress=False)
    ids = pd.Index(scored["customer_id"].astype(str))
    segments = customer_segments(active, None if value is None else value.clv, settings.segments)
    segments = segments.assign(customer_id=segments["customer_id"].astype(str)).set_index("customer_id")
    rows, likely_lost = listed_customers(settings, scored, active, segments, value)
    grid = pd.crosstab(segments["rfm_recency"], segments["rfm_frequency"]).reindex(
        index=range(settings.segments.rfm_bins, 0, -1), columns=range(1, settings.segments.rfm_bins + 1), fill_value=0
    )
    lifecycle = segments["lifecycle_stage"].value_counts().reindex(list(LIFECYCLE_STAGES), fill_value=0)
    board = Dashboard(
        churn_version=churn_version,
        rows=rows,
        rfm_grid=grid.to_numpy().tolist(),
        lifecycle={k: int(v) for k, v in lifecycle.items()},
        budget_curve=_budget_curve(settings, value, ids) if value is not None else [],
        history={},
        retention_note=None if value is not None else retention_error,
        likely_lost=likely_lost,
    )
    return replace(board, history=_recent_history(settings, board.listed_ids()))


def _curve_points(curve: list[tuple[float, float]]) -> list[tuple[float, float, float, float]]:
    """(x, y, budget, value) in SVG units for the value-vs-budget chart."""
    top_b = max((b for b, _ in curve), default=0.0) or 1.0
    top_v = max((v for _, v in curve), default=0.0) or 1.0
    return [
        (PAD + b / top_b * (CHART_W - 2 * PAD), CHART_H - PAD - v / top_v * (CHART_H - 2 * PAD), b, v) for b, v in curve
    ]


def render_page(
    board: Dashboard,
    settings: Settings,
    segment: str | None = None,
    tier: str | None = None,
    hidden: set[str] = frozenset(),
    offer: str | None = None,
    channel: str | None = None,
) -> str:
    """The whole page; `segment` (a lifecycle stage), `tier` (a risk tier), `offer` (the best offer's type) and
    `channel` (the preferred one) pre-filter the customer lists, and `hidden` customers (erased since the board was
    built) are left out."""
    lists = {"rows": board.rows, "lost": board.likely_lost}
    lists = {k: None if v is None else v[~v["customer_id"].isin(hidden)] for k, v in lists.items()}
    wanted = {"segment": segment or "", "tier": tier or "", "offer": offer or "", "channel": channel or ""}
    tiers = [t for t, _ in sorted(settings.churn.risk_tiers.items(), key=lambda kv: -kv[1])]
    peak = max((max(r) for r in board.rfm_grid), default=0) or 1
    listed = board.listed()
    return _ENV.get_template("page.html").render(
        board=board,
        rows=[_row(r, wanted) for r in lists["rows"].to_dict(orient="records")],
        likely_lost=None
        if lists["lost"] is None
        else [_row(r, wanted) for r in lists["lost"].to_dict(orient="records")],
        lost_text=PRIORITY_TEXT[LIKELY_LOST],
        offers=sorted({o["offer_type"] for o in listed.get("best_offer", []) if isinstance(o, dict)}),
        channels=sorted({c for c in listed.get("preferred_channel", []) if isinstance(c, str)}),
        tiers=tiers,
        stages=list(LIFECYCLE_STAGES),
        wanted=wanted,
        peak=peak,
        points=_curve_points(board.budget_curve),
        chart={"w": CHART_W, "h": CHART_H, "pad": PAD},
        budget=settings.dashboard.budget,
        lifecycle_peak=max(board.lifecycle.values(), default=0) or 1,
        css=(ASSETS / "dashboard.css").read_text(),
        js=(ASSETS / "dashboard.js").read_text(),
    )


def _row(r: dict[str, Any], wanted: dict[str, str]) -> dict[str, Any]:
    """A listed customer's record with its filter keys and whether the pre-set filters show it."""
    keys = {
        "segment": r.get("lifecycle_stage") or "",
        "tier": r.get("risk_tier") or "",
        "offer": r["best_offer"]["offer_type"] if isinstance(r.get("best_offer"), dict) else "",
        "channel": r["preferred_channel"] if isinstance(r.get("preferred_channel"), str) else "",
    }
    return {**r, "keys": keys, "shown": all(not v or keys[k] == v for k, v in wanted.items())}


def render_customer(board: Dashboard, customer_id: str, live_events: list[dict[str, Any]]) -> str | None:
    """The detail fragment of one listed customer (None when not listed): reasons, CLV, offer, recent history."""
    listed = board.listed()
    match = listed[listed["customer_id"] == customer_id]
    if match.empty:
        return None
    live = [
        {
            "ts": str(e.get("ts", ""))[:16].replace("T", " "),
            "type": e.get("type"),
            "item_id": e.get("item_id"),
            "unit_price": e.get("unit_price"),
        }
        for e in live_events
    ]
    return _ENV.get_template("customer.html").render(
        row=match.iloc[0].to_dict(), history=live + board.history.get(customer_id, [])
    )


def render_login(error: str | None = None) -> str:
    """The login form that stores the API key in the dashboard's cookie."""
    return _ENV.get_template("login.html").render(error=error, css=(ASSETS / "dashboard.css").read_text())


async def log_in(request: Request) -> Response:
    """The login form's answer: its api_key stored in the HttpOnly, SameSite=Strict cookie and back to /dashboard,
    or the form again with a 400 when the key is missing."""
    try:
        given = (await request.form()).get("api_key", "")
    except (HTTPException, MultiPartException) as exc:  # a malformed form
        return HTMLResponse(render_login(f"api_key: the form could not be read ({exc})"), status_code=400)
    key = given.strip(_BLANKS) if isinstance(given, str) else ""
    if not re.fullmatch(r"[!-~]+", key):
        return HTMLResponse(render_login("api_key: enter your API key (printable ASCII)"), status_code=400)
    answer = RedirectResponse("/dashboard", status_code=303)
    answer.set_cookie(COOKIE, key, httponly=True, samesite="strict", secure=request.url.scheme == "https")
    return answer
