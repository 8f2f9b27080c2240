"""Data exploration for notebooks and reports: Kaplan-Meier retention curves, RFM grid, complaint categories vs churn.

A customer "churns" (the event) when their last purchase lies at least `features.horizon_days` before the end of
the data, at that last purchase; everyone else is censored at the end of the data.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from patron.config import Settings


def kaplan_meier(durations: pd.Series, observed: pd.Series) -> pd.DataFrame:
    """Kaplan-Meier survival estimate: time, at_risk, events and survival after each distinct duration."""
    df = pd.DataFrame({"t": np.asarray(durations, dtype=float), "e": np.asarray(observed, dtype=int)})
    table = df.groupby("t").agg(events=("e", "sum"), leaving=("e", "size"))
    table["at_risk"] = table["leaving"][::-1].cumsum()[::-1]
    table["survival"] = (1 - table["events"] / table["at_risk"]).cumprod()
    out = table.reset_index().rename(columns={"t": "time"})[["time", "at_risk", "events", "survival"]]
    start = pd.DataFrame({"time": [0.0], "at_risk": [len(df)], "events": [0], "survival": [1.0]})
    return pd.concat([start, out[out["time"] > 0]], ignore_index=True)


def last_purchases(settings: Settings) -> pd.Series:
    """Each buyer's last purchase time."""
    from features.tables.store import read_table

    ev = read_table(settings.tables_dir, "events", columns=["customer_id", "ts", "type"])
    buys = ev[ev["type"] == "purchase"]
    return buys.groupby(buys["customer_id"].astype(str))["ts"].max()


def lifetimes_since(settings: Settings, start: pd.Series) -> pd.DataFrame:
    """Per customer (index of `start`): days from start to churn or to the end of the data, and whether churned."""
    from features.pit.build import data_end

    end = data_end(settings)
    last = last_purchases(settings).reindex(start.index)
    last = last.where(last > start, start)  # no purchase after the start: churned (if at all) at the start
    churned = (end - last) >= pd.Timedelta(days=settings.features.horizon_days)
    stop = last.where(churned, end)
    return pd.DataFrame({"duration_days": (stop - start).dt.total_seconds() / 86400.0, "churned": churned})


def curves_by(lifetimes: pd.DataFrame, groups: pd.Series) -> pd.DataFrame:
    """Kaplan-Meier curves per group: group, time, at_risk, events, survival."""
    parts = [
        kaplan_meier(g["duration_days"], g["churned"]).assign(group=str(name))
        for name, g in lifetimes.groupby(groups.reindex(lifetimes.index))
    ]
    return pd.concat(parts, ignore_index=True)[["group", "time", "at_risk", "events", "survival"]]


def cohort_curves(settings: Settings, freq: str = "Q") -> pd.DataFrame:
    """Retention curves from signup (first purchase without a signup date) by signup cohort (a pandas period)."""
    from features.tables.store import read_table

    customers = read_table(settings.tables_dir, "customers", columns=["customer_id", "signup_date"])
    first = read_table(settings.tables_dir, "events", columns=["customer_id", "ts"]).groupby("customer_id")["ts"].min()
    signup = (
        customers.set_index(customers["customer_id"].astype(str))["signup_date"]
        if customers is not None
        else pd.Series(dtype="datetime64[ns]")
    )
    start = signup.reindex(first.index.astype(str)).fillna(pd.Series(first.to_numpy(), index=first.index.astype(str)))
    return curves_by(lifetimes_since(settings, start), start.dt.to_period(freq).astype(str))


def segment_curves(settings: Settings, cutoff: pd.Timestamp) -> pd.DataFrame:
    """Retention curves from a cutoff for customers active at it, by their lifecycle stage at the cutoff."""
    from features.pit.build import customer_features
    from features.pit.segments import customer_segments

    seg = customer_segments(customer_features(settings, cutoff), None, settings.segments).set_index("customer_id")
    active = seg[seg["lifecycle_stage"] != "lapsed"]
    start = pd.Series(cutoff, index=active.index)
    return curves_by(lifetimes_since(settings, start), active["lifecycle_stage"])


def labelled_segments(settings: Settings, cutoff: pd.Timestamp) -> pd.DataFrame:
    """Customers active at the cutoff with their churn label (next horizon) and segments at the cutoff."""
    from features.pit import build
    from features.pit.segments import customer_segments

    frame = build.training_set(settings, [cutoff])
    seg = customer_segments(frame, None, settings.segments)
    return seg.assign(churned=frame["churned"].to_numpy())


def rfm_grid(settings: Settings, cutoff: pd.Timestamp) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Customers and churn rate by RFM recency (rows) x frequency (columns) score at the cutoff."""
    data = labelled_segments(settings, cutoff)
    counts = data.pivot_table(index="rfm_recency", columns="rfm_frequency", values="churned", aggfunc="size")
    rates = data.pivot_table(index="rfm_recency", columns="rfm_frequency", values="churned", aggfunc="mean")
    return counts.fillna(0).astype(int), rates


def complaints_vs_churn(settings: Settings, cutoff: pd.Timestamp) -> pd.DataFrame:
    """Per ticket category (tickets opened in the lookback before the cutoff): customers and their churn rate,
    beside customers without any ticket."""
    from features.tables.store import read_table

    data = labelled_segments(settings, cutoff).set_index("customer_id")
    tickets = read_table(settings.tables_dir, "tickets", columns=["customer_id", "opened_at", "category"])
    start = cutoff - pd.Timedelta(days=settings.features.lookback_days)
    if tickets is None:
        tickets = pd.DataFrame(columns=["customer_id", "opened_at", "category"])
    recent = tickets[(tickets["opened_at"] >= start) & (tickets["opened_at"] < cutoff)]
    recent = recent.assign(customer_id=recent["customer_id"].astype(str))
    rows = [{"category": "(no ticket)", **_churn(data.loc[~data.index.isin(recent["customer_id"]), "churned"])}]
    for category, g in recent.groupby("category"):
        rows.append({"category": str(category), **_churn(data.loc[data.index.isin(g["customer_id"]), "churned"])})
    return pd.DataFrame(rows).sort_values("churn_rate", ascending=False, ignore_index=True)


def _churn(labels: pd.Series) -> dict[str, float]:
    return {"customers": len(labels), "churn_rate": float(labels.mean()) if len(labels) else np.nan}
