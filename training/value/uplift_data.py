"""The offer experiment rebuilt from the data: randomised campaign days, treated and control customers, outcomes.

On each randomised campaign day t (a day on which offers marked `randomized` were sent, whose churn horizon lies
inside the data) the eligible customers are those active at t (a purchase in [t - lookback_days, t), as in the churn
labels) who were not in an offer (none sent in the `uplift.offer_active_days` days before t). Treated: eligible
customers sent a randomised offer on t (by offer type); control: eligible customers sent no offer on t. Outcome: the
churn label at t (no purchase in [t, t + horizon_days)); features: the point-in-time customer features at t.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.pit import build
from features.pit.cutoffs import data_end
from features.tables.store import read_table
from patron.config import Settings, UpliftConfig

CONTROL = "control"
ID_COLUMNS = ["customer_id", "cutoff"]
TREATMENT = "offer_type"
LABEL = "churned"
SPLITS = ("train", "valid", "test")


def randomised_offers(settings: Settings) -> pd.DataFrame:
    """The offers table with a `day` column (sent_at at midnight); ValueError when there is none."""
    offers = read_table(settings.tables_dir, "offers", columns=["customer_id", "sent_at", "offer_type", "randomized"])
    if offers is None or offers.empty:
        raise ValueError("offers: the workspace has no offers, so there is no experiment to learn uplift from")
    offers = offers.assign(
        customer_id=offers["customer_id"].astype(str),
        offer_type=offers["offer_type"].astype(str),
        day=pd.to_datetime(offers["sent_at"]).dt.normalize(),
    )
    return offers


def campaign_days(settings: Settings, offers: pd.DataFrame) -> list[pd.Timestamp]:
    """Days with randomised offers whose churn horizon ends inside the data (the latest `max_campaign_days`)."""

    end = data_end(settings)
    horizon = pd.Timedelta(days=settings.features.horizon_days)
    days = sorted(pd.Timestamp(d) for d in offers.loc[offers["randomized"].astype(bool), "day"].unique())
    days = [d for d in days if d + horizon <= end]
    limit = settings.uplift.max_campaign_days
    if not days:
        raise ValueError("offers: no randomised campaign day has a full churn horizon inside the data")
    return days[-limit:] if limit else days


def campaign_rows(settings: Settings, offers: pd.DataFrame, day: pd.Timestamp) -> pd.DataFrame:
    """Eligible customers on one campaign day: customer_id, cutoff, features, offer_type (or control), churned."""

    labels = build.churn_labels(settings, day)
    active = set(labels.loc[labels["active"], "customer_id"])
    since = day - pd.Timedelta(days=settings.uplift.offer_active_days)
    recent = offers[(offers["day"] < day) & (offers["day"] > since)]
    today = offers[offers["day"] == day]
    eligible = active - set(recent["customer_id"])
    # A customer sent a non-randomised offer that day is in neither arm.
    eligible -= set(today.loc[~today["randomized"].astype(bool), "customer_id"])
    treated = today[today["randomized"].astype(bool)].drop_duplicates("customer_id").set_index("customer_id")
    feats = build.customer_features(settings, day)
    feats = feats[feats["customer_id"].astype(str).isin(eligible)].copy()
    feats.insert(1, "cutoff", day)
    ids = feats["customer_id"].astype(str)
    feats[TREATMENT] = ids.map(treated["offer_type"]).fillna(CONTROL).to_numpy()
    churned = labels.set_index("customer_id")["churned"]
    feats[LABEL] = ids.map(churned).astype("int64").to_numpy()
    return feats


def experiment(settings: Settings) -> pd.DataFrame:
    """Every campaign day's eligible customers, stacked (see the module docstring)."""
    offers = randomised_offers(settings)
    rows = [campaign_rows(settings, offers, day) for day in campaign_days(settings, offers)]
    return pd.concat(rows, ignore_index=True)


def customer_split(customer_ids: pd.Series, cfg: UpliftConfig) -> np.ndarray:
    """train / valid / test per row, customer-disjoint: customers shuffled with the seed, then cut by share."""
    ids = np.asarray(customer_ids.astype(str))
    unique = np.unique(ids)
    order = np.random.default_rng(cfg.seed).permutation(len(unique))
    n_test, n_valid = round(len(unique) * cfg.test_share), round(len(unique) * cfg.valid_share)
    split = np.full(len(unique), "train", dtype=object)
    split[order[:n_test]] = "test"
    split[order[n_test : n_test + n_valid]] = "valid"
    return pd.Series(split, index=unique).reindex(ids).to_numpy()


def offer_types(frame: pd.DataFrame) -> list[str]:
    """Offer types with treated rows in the experiment, sorted."""
    return sorted(t for t in frame[TREATMENT].unique() if t != CONTROL)
