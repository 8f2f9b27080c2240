"""GET /dashboard/campaigns: the campaigns with their readouts and the loyalty KPIs per month and per segment.

Campaigns come as the campaign store lists them (one settings dict each: id, name, sent_at, treatment, holdout,
spend, expected_net_value) and a readout as GET /campaigns/{id} answers it (campaign, window, provisional, and the
groups overall, by_offer, by_segment, by_segment_offer: treatment, holdout, retained, repurchased, redemption_rate,
expected and realised net value, verdict).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from features.pit.segments import customer_segments
from patron.config import Settings
from serving.dashboard.loyalty_kpis import loyalty_kpis
from serving.dashboard.view import _ENV, ASSETS

READOUT_GROUPS = ("overall", "by_offer", "by_segment")


def campaigns_page(
    settings: Settings,
    features: pd.DataFrame,
    cutoff: pd.Timestamp,
    campaigns: list[dict[str, Any]] | None,
    readout: dict[str, Any] | None = None,
) -> str:
    """The page over the customers' point-in-time `features` at `cutoff` (their lifecycle stages group the KPIs)."""
    stages = customer_segments(features, None, settings.segments).set_index("customer_id")["lifecycle_stage"]
    monthly, by_segment = loyalty_kpis(settings, cutoff, stages)
    return render_campaigns(settings, monthly, by_segment, campaigns, readout)


def render_campaigns(
    settings: Settings,
    monthly: pd.DataFrame,
    by_segment: pd.DataFrame,
    campaigns: list[dict[str, Any]] | None,
    readout: dict[str, Any] | None = None,
) -> str:
    """The page: the campaigns (newest first; the section is left out when `campaigns` is None, without a campaign
    store), one readout when given, the loyalty KPI tables."""

    def records(frame: pd.DataFrame, key: str) -> list[dict[str, Any]]:
        return (
            frame.rename_axis(key)
            .reset_index()
            .astype(object)
            .where(frame.reset_index().notna(), None)
            .to_dict(orient="records")
        )

    groups = [g for k in READOUT_GROUPS for g in (readout or {}).get(k, [])]
    return _ENV.get_template("campaigns.html").render(
        campaigns=None if campaigns is None else list(reversed(campaigns)),
        readout=readout,
        readout_groups=groups,
        monthly=records(monthly, "month"),
        by_segment=records(by_segment, "segment"),
        segment_months=settings.dashboard.kpi_segment_months,
        css=(ASSETS / "dashboard.css").read_text(),
    )
