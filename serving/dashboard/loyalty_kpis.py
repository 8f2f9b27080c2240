"""The loyalty KPIs of the CRM page, per calendar month and per segment, from the workspace tables.

Of the customers who bought in a month:
- participation: the share in the programme that month (a points-ledger entry whose tier is not "none");
- repurchase rate: the share who bought on two or more days that month;
and of the month's points and offers:
- points redemption rate: points taken off the ledger (redeemed or expired: the contract's ledger does not tell
  them apart) over points earned that month;
- offer redemption rate: offers sent that month that were redeemed, over offers sent.
The month of the cutoff, still under way, is marked as such. Per segment: the same over the last
`dashboard.kpi_segment_months` months, customers grouped by their lifecycle stage at the cutoff.
"""

from __future__ import annotations

import pandas as pd

from features.tables.store import read_table
from patron.config import Settings

NO_TIER = "none"  # the loyalty tier of a customer outside the programme
KPI_COLUMNS = ["buyers", "participation", "repurchase_rate", "points_redemption_rate", "offer_redemption_rate"]


def _rate(num: pd.Series, den: pd.Series) -> pd.Series:
    return (num / den.where(den > 0)).astype(float)


def _kpis(purchases: pd.DataFrame, ledger: pd.DataFrame, offers: pd.DataFrame, key: str) -> pd.DataFrame:
    """KPI_COLUMNS per value of `key` (a column of all three frames)."""
    days = purchases.groupby([key, "customer_id"], observed=True)["day"].nunique()
    buyers = days.groupby(level=0, observed=True).size()
    repeat = (days >= 2).groupby(level=0, observed=True).sum()
    enrolled = ledger[ledger["tier_after"].astype(str) != NO_TIER]
    members = set(zip(enrolled[key], enrolled["customer_id"], strict=True))
    in_programme = pd.Series([k in members for k in days.index], index=days.index).groupby(level=0).sum()
    earned = ledger["points_delta"].clip(lower=0).groupby(ledger[key]).sum()
    taken = (-ledger["points_delta"]).clip(lower=0).groupby(ledger[key]).sum()
    sent = offers.groupby(key).size()
    redeemed = offers["redeemed"].groupby(offers[key]).sum()
    out = pd.DataFrame({"buyers": buyers})
    out["participation"] = _rate(in_programme.reindex(out.index, fill_value=0), out["buyers"])
    out["repurchase_rate"] = _rate(repeat.reindex(out.index, fill_value=0), out["buyers"])
    out["points_redemption_rate"] = _rate(taken.reindex(out.index), earned.reindex(out.index))
    out["offer_redemption_rate"] = _rate(redeemed.reindex(out.index), sent.reindex(out.index))
    return out[KPI_COLUMNS]


def loyalty_kpis(settings: Settings, cutoff: pd.Timestamp, stages: pd.Series) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per month, latest last; per lifecycle stage) KPI tables before `cutoff`; `stages` maps customer_id to stage."""
    months = settings.dashboard.kpi_months
    start = (cutoff.to_period("M") - months + 1).to_timestamp()
    events = read_table(settings.tables_dir, "events", columns=["customer_id", "ts", "type"])
    purchases = events[(events["type"] == "purchase") & (events["ts"] >= start) & (events["ts"] < cutoff)]
    purchases = purchases.assign(customer_id=purchases["customer_id"].astype(str), day=purchases["ts"].dt.normalize())
    ledger = read_table(settings.tables_dir, "loyalty", columns=["customer_id", "ts", "points_delta", "tier_after"])
    ledger = pd.DataFrame(columns=["customer_id", "ts", "points_delta", "tier_after"]) if ledger is None else ledger
    ledger = ledger[(ledger["ts"] >= start) & (ledger["ts"] < cutoff)].assign(
        customer_id=lambda f: f["customer_id"].astype(str), points_delta=lambda f: f["points_delta"].astype(float)
    )
    offers = read_table(settings.tables_dir, "offers", columns=["customer_id", "sent_at", "redeemed_at"])
    offers = pd.DataFrame(columns=["customer_id", "sent_at", "redeemed_at"]) if offers is None else offers
    offers = offers[(offers["sent_at"] >= start) & (offers["sent_at"] < cutoff)]
    offers = offers.assign(
        customer_id=offers["customer_id"].astype(str),
        ts=offers["sent_at"],
        redeemed=(offers["redeemed_at"].notna() & (offers["redeemed_at"] < cutoff)).astype(int),
    )
    frames = [purchases, ledger, offers]
    monthly = _kpis(*[f.assign(month=f["ts"].dt.strftime("%Y-%m")) for f in frames], "month")
    recent = (cutoff.to_period("M") - settings.dashboard.kpi_segment_months + 1).to_timestamp()
    by_stage = stages.astype(str)
    segment = _kpis(
        *[
            f[f["ts"] >= recent].assign(segment=lambda g: g["customer_id"].map(by_stage).fillna("unknown"))
            for f in frames
        ],
        "segment",
    )
    monthly = monthly.sort_index()
    current = f"{cutoff:%Y-%m}"
    if cutoff != cutoff.normalize().replace(day=1) and current in monthly.index:  # a month still under way
        monthly = monthly.rename(index={current: f"{current} (to {cutoff:%d %b})"})
    return monthly, segment
