"""Campaigns: a retention plan turned into treatment and a random holdout, written to WORKSPACE/campaigns/<id>/ and
to the offers table (so the next `patron train uplift` learns from it), and read out against its holdout."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from features.pit.cutoffs import data_end
from features.privacy.consent import consent_refusals
from features.tables.campaigns import (
    Campaign,
    campaign_id,
    offer_rows,
    read_campaign,
    record_offers,
    write_campaign,
)
from patron.config import Settings
from serving.answers.retention_plan import RetentionPlan, workspace_plan
from training.value.campaign_outcomes import campaign_readout, outcome_days
from training.value.holdout import assign_arms, segment_of


@dataclass(frozen=True)
class Created:
    """The campaign and whether this call made it (False: one by that name existed and is returned unchanged)."""

    campaign: Campaign
    created: bool

    def summary(self) -> str:
        """One line for the command line."""
        m = self.campaign.meta
        verb = "created" if self.created else "exists already (not duplicated)"
        return (
            f"campaign {m['id']} {verb}: {m['treatment']} customers get an offer, {m['holdout']} held out "
            f"({m['holdout_share']:.0%}), spend {m['spend']:.2f}, expected net value {m['expected_net_value']:.2f}, "
            f"sent {m['sent_at'][:10]}, read out after {m['outcome_days']} days"
        )


def check_request(budget: float, holdout: float) -> None:
    """ValueError naming the field for a budget below 0 or a holdout outside (0, 0.5]."""
    if not np.isfinite(budget) or budget < 0:
        raise ValueError(f"budget: must be at least 0, got {budget}")
    if not np.isfinite(holdout) or not 0 < holdout <= 0.5:
        raise ValueError(f"holdout: must be above 0 and at most 0.5, got {holdout}")


def existing(settings: Settings, name: str) -> Campaign | None:
    """The campaign of that name, if it was created before."""
    try:
        return read_campaign(settings.campaigns_dir, campaign_id(name))
    except LookupError:
        return None


def create_campaign(
    settings: Settings,
    plan: RetentionPlan,
    name: str,
    budget: float,
    holdout: float,
    sent_at: pd.Timestamp,
    refused: frozenset[str] = frozenset(),
) -> Created:
    """Split the plan's customers (never one in `refused`, who did not allow marketing) and write the campaign."""
    check_request(budget, holdout)
    cid = campaign_id(name)
    found = existing(settings, name)
    if found is not None:
        return Created(found, False)
    rows = plan.rows[~plan.rows["customer_id"].astype(str).isin(refused)].reset_index(drop=True)
    if rows.empty:
        field = "budget" if plan.eligible else "customers"
        raise ValueError(
            f"{field}: no eligible customer for a campaign ({plan.eligible} consenting active customers, none with "
            f"an offer worth its cost within budget {budget:g})"
        )
    rows = rows.assign(segment=segment_of(rows))
    rows.insert(1, "arm", assign_arms(rows, holdout, settings.campaign.seed).to_numpy())
    treated = rows[rows["arm"] == "treatment"]
    meta: dict[str, Any] = {
        "id": cid,
        "name": name,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "sent_at": pd.Timestamp(sent_at).isoformat(),
        "budget": float(budget),
        "holdout_share": float(holdout),
        "seed": settings.campaign.seed,
        "outcome_days": outcome_days(settings),
        "treatment": len(treated),
        "holdout": len(rows) - len(treated),
        "spend": float(treated["cost"].sum()),
        "expected_net_value": float(treated["expected_net_value"].sum()),
        "offers": {str(k): int(v) for k, v in treated["offer_type"].value_counts().sort_index().items()},
    }
    campaign = Campaign(meta, rows)
    record_offers(settings.tables_dir, offer_rows(campaign))  # first: a re-run after a crash replaces the same ids
    try:
        write_campaign(settings.campaigns_dir, campaign)
    except FileExistsError:  # created meanwhile by another request
        return Created(read_campaign(settings.campaigns_dir, cid), False)
    return Created(campaign, True)


def workspace_campaign(
    settings: Settings, budget: float, holdout: float | None = None, name: str | None = None
) -> Created:
    """`patron campaign create`: the workspace's retention plan at the latest cutoff, as a campaign sent that day."""
    refused = consent_refusals(settings, "marketing")
    return served_campaign(settings, lambda b: workspace_plan(settings, b), refused, budget, holdout, name)


def served_campaign(
    settings: Settings,
    plan_for_budget: Callable[[float], RetentionPlan],
    refused: frozenset[str],
    budget: float,
    holdout: float | None,
    name: str | None,
) -> Created:
    """The campaign of the plan `plan_for_budget` makes (the worker's for POST /campaigns), unless one of that name
    exists; customers in `refused` (no marketing consent) are never in it."""
    holdout = settings.campaign.holdout if holdout is None else holdout
    check_request(budget, holdout)
    sent_at = data_end(settings)
    name = name or f"retention-{sent_at:%Y-%m-%d}"
    found = existing(settings, name)
    if found is not None:
        return Created(found, False)
    return create_campaign(settings, plan_for_budget(budget), name, budget, holdout, sent_at, refused)


def campaign_answer(settings: Settings, cid: str) -> dict[str, Any]:
    """GET /campaigns/{id}: the readout (LookupError for an unknown id)."""
    return campaign_readout(settings, read_campaign(settings.campaigns_dir, cid))
