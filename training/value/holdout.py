"""A campaign's control group: planned customers split at random into treatment and a holdout that gets no offer,
stratified by segment and offer so that both arms hold the same mix.

Customers are shuffled with the seed, grouped by stratum (segment, offer type), and every 1/holdout-th customer along
that order, from a random start, is held out (systematic sampling): the holdout share of every stratum is within one
customer of `holdout`, and the whole campaign's holdout is round(n x holdout) up to one.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.tables.campaigns import HOLDOUT, TREATMENT


def segment_of(rows: pd.DataFrame) -> pd.Series:
    """The campaign segment: lifecycle stage / value tier ("unknown" where missing)."""
    stage = rows["lifecycle_stage"].astype(object).where(rows["lifecycle_stage"].notna(), "unknown")
    tier = rows["value_tier"].astype(object).where(rows["value_tier"].notna(), "unknown")
    return stage.astype(str) + "/" + tier.astype(str)


def assign_arms(rows: pd.DataFrame, holdout: float, seed: int) -> pd.Series:
    """treatment or holdout per row (indexed like `rows`, which need `segment` and `offer_type`), stratified."""
    if not 0 < holdout <= 0.5:
        raise ValueError(f"holdout: must be above 0 and at most 0.5, got {holdout}")
    rng = np.random.default_rng(seed)
    shuffled = rows.iloc[rng.permutation(len(rows))]
    ordered = shuffled.sort_values(["segment", "offer_type"], kind="stable")
    position = np.arange(len(ordered)) + rng.random()
    held = np.floor((position + 1) * holdout) > np.floor(position * holdout)
    return pd.Series(np.where(held, HOLDOUT, TREATMENT), index=ordered.index).reindex(rows.index)
