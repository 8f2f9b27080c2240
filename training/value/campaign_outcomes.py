"""A campaign's outcomes read from the workspace tables: purchases and redemptions in its outcome window."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from features.tables.campaigns import Campaign
from features.tables.store import read_table
from patron.config import Settings
from training.value.campaign_readout import ReadoutSettings, outcomes_from, readout


@dataclass(frozen=True)
class CampaignOutcome:
    """Per-customer outcomes and the window they cover."""

    frame: pd.DataFrame
    window_start: pd.Timestamp
    window_end: pd.Timestamp  # the outcome window's end
    observed_until: pd.Timestamp  # the data's end, when before window_end: the readout is provisional

    @property
    def provisional(self) -> bool:
        """The outcome window has not passed yet."""
        return self.observed_until < self.window_end


def outcome_days(settings: Settings) -> int:
    """The outcome window: campaign.outcome_days, else the churn label's horizon."""
    return settings.campaign.outcome_days or settings.features.horizon_days


def campaign_outcome(settings: Settings, campaign: Campaign) -> CampaignOutcome:
    """Purchases (events of type purchase, quantity x unit price) and redemptions of the campaign's offers."""
    from features.pit.cutoffs import data_end

    start = campaign.sent_at
    end = start + pd.Timedelta(days=int(campaign.meta.get("outcome_days") or outcome_days(settings)))
    ids = set(campaign.assignment["customer_id"].astype(str))
    events = read_table(settings.tables_dir, "events", ["customer_id", "ts", "type", "quantity", "unit_price"])
    events = events[(events["type"] == "purchase") & (events["ts"] >= start) & (events["ts"] < end)]
    events = events[events["customer_id"].astype(str).isin(ids)]
    purchases = events.assign(value=events["quantity"].astype(float) * events["unit_price"].fillna(0).astype(float))
    offers = read_table(settings.tables_dir, "offers", ["offer_id", "customer_id", "redeemed_at"])
    redeemed: set[str] = set()
    if offers is not None:
        mine = offers[offers["offer_id"].astype(str).str.startswith(f"{campaign.id}:")]
        hit = mine["redeemed_at"].notna() & (mine["redeemed_at"] < end)
        redeemed = set(mine.loc[hit, "customer_id"].astype(str))
    frame = outcomes_from(campaign.assignment, purchases[["customer_id", "ts", "value"]], redeemed)
    return CampaignOutcome(frame, start, end, min(data_end(settings), end))


def readout_settings(settings: Settings) -> ReadoutSettings:
    """The campaign section's readout settings."""
    c = settings.campaign
    return ReadoutSettings(c.confidence, c.bootstrap, c.min_arm_customers, c.seed)


def campaign_readout(settings: Settings, campaign: Campaign) -> dict[str, Any]:
    """The readout of a written campaign from the workspace tables, marked provisional before its window ends."""
    outcome = campaign_outcome(settings, campaign)
    groups = readout(outcome.frame, readout_settings(settings))
    if outcome.provisional:
        seen = max((outcome.observed_until - outcome.window_start).days, 0)
        days = (outcome.window_end - outcome.window_start).days
        for part in groups.values():
            for g in part:
                g["verdict"] = (
                    f"{g['group']}: no outcome observed yet (the window starts {outcome.window_start:%Y-%m-%d})"
                    if seen == 0
                    else f"provisional, {seen} of {days} days observed: {g['verdict']}"
                )
    return {
        "campaign": campaign.meta,
        "window": {
            "start": outcome.window_start.isoformat(),
            "end": outcome.window_end.isoformat(),
            "observed_until": outcome.observed_until.isoformat(),
        },
        "provisional": outcome.provisional,
        **groups,
    }
