"""GET /dashboard: the CRM manager's page (at-risk customers, segments, the retention plan's value vs budget),
server-rendered from the service's own scoring, segments and plan code, precomputed once per churn champion; and its
login form, which keeps the API key in a cookie."""

from __future__ import annotations

import re
from dataclasses import dataclass
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
from serving.answers.retention_plan import CustomerValue, parse_offers

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
    rows: pd.DataFrame  # riskiest active customers first: id, probability, tier, stage, rfm, clv, offer, reasons
    rfm_grid: list[list[int]]  # customers by recency score (rows, 5 best first) x frequency score (columns)
    lifecycle: dict[str, int]
    budget_curve: list[tuple[float, float]]  # (budget, expected net value of the plan)
    history: dict[str, list[dict[str, Any]]]  # recent table events per listed customer, latest first
    retention_note: str | None  # why CLV, offers and the plan are missing (None when shown)


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
    top = scored.head(settings.dashboard.top).reset_index(drop=True)
    extras = (
        value.customer_extras(top["customer_id"].tolist(), settings.retention.offers)
        if value is not None
        else [{} for _ in range(len(top))]
    )
    seg = segments.reindex(top["customer_id"])
    rows = top.assign(
        lifecycle_stage=seg["lifecycle_stage"].to_numpy(),
        rfm_score=seg["rfm_score"].to_numpy(),
        value_tier=seg["value_tier"].to_numpy(),
        clv=[e.get("clv") for e in extras],
        best_offer=[e.get("best_offer") for e in extras],
    )
    grid = pd.crosstab(segments["rfm_recency"], segments["rfm_frequency"]).reindex(
        index=range(settings.segments.rfm_bins, 0, -1), columns=range(1, settings.segments.rfm_bins + 1), fill_value=0
    )
    lifecycle = segments["lifecycle_stage"].value_counts().reindex(list(LIFECYCLE_STAGES), fill_value=0)
    return Dashboard(
        churn_version=churn_version,
        rows=rows,
        rfm_grid=grid.to_numpy().tolist(),
        lifecycle={k: int(v) for k, v in lifecycle.items()},
        budget_curve=_budget_curve(settings, value, ids) if value is not None else [],
        history=_recent_history(settings, rows["customer_id"].tolist()),
        retention_note=None if value is not None else retention_error,
    )


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
) -> str:
    """The whole page; `segment` (a lifecycle stage) and `tier` (a risk tier) pre-filter the at-risk list, and
    `hidden` customers (erased since the board was built) are left out."""
    rows = board.rows[~board.rows["customer_id"].isin(hidden)] if hidden else board.rows
    if segment:
        rows = rows[rows["lifecycle_stage"] == segment]
    if tier:
        rows = rows[rows["risk_tier"] == tier]
    tiers = [t for t, _ in sorted(settings.churn.risk_tiers.items(), key=lambda kv: -kv[1])]
    peak = max((max(r) for r in board.rfm_grid), default=0) or 1
    return _ENV.get_template("page.html").render(
        board=board,
        rows=rows.to_dict(orient="records"),
        tiers=tiers,
        stages=list(LIFECYCLE_STAGES),
        segment=segment or "",
        tier=tier or "",
        peak=peak,
        points=_curve_points(board.budget_curve),
        chart={"w": CHART_W, "h": CHART_H, "pad": PAD},
        budget=settings.dashboard.budget,
        lifecycle_peak=max(board.lifecycle.values(), default=0) or 1,
        css=(ASSETS / "dashboard.css").read_text(),
        js=(ASSETS / "dashboard.js").read_text(),
    )


def render_customer(board: Dashboard, customer_id: str, live_events: list[dict[str, Any]]) -> str | None:
    """The detail fragment of one listed customer (None when not listed): reasons, CLV, offer, recent history."""
    match = board.rows[board.rows["customer_id"] == customer_id]
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
