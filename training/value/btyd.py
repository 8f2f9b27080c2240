"""The classic "buy till you die" models through `lifetimes`: BG/NBD purchase counts and Gamma-Gamma spend.

Time is measured in periods of `freq` ("D" days, "W" weeks); `horizon_periods` counts those periods.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from lifetimes import BetaGeoFitter, GammaGammaFitter
from lifetimes.utils import summary_data_from_transaction_data

PERIOD_DAYS = {"D": 1, "W": 7}


def rfm_summary(purchases: pd.DataFrame, cutoff: pd.Timestamp, freq: str = "D") -> pd.DataFrame:
    """frequency, recency, T, monetary_value per customer_id from purchase lines (customer_id, ts, value) before t."""
    if freq not in PERIOD_DAYS:
        raise ValueError(f"btyd freq {freq!r}: choose one of {', '.join(PERIOD_DAYS)}")
    before = purchases[purchases["ts"] < cutoff]
    if before.empty:
        raise ValueError(f"no purchases before the cutoff {cutoff.date()}")
    summary = summary_data_from_transaction_data(
        before[["customer_id", "ts", "value"]].astype({"value": float}),
        "customer_id",
        "ts",
        monetary_value_col="value",
        observation_period_end=cutoff - pd.Timedelta(days=1),
        freq=freq,
    )
    summary.index = summary.index.astype(str)
    return summary


def fit_bgnbd(summary: pd.DataFrame, penalizer: float = 0.0) -> BetaGeoFitter:
    """BG/NBD fitted by lifetimes on a frequency/recency/T summary."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return BetaGeoFitter(penalizer_coef=penalizer).fit(summary["frequency"], summary["recency"], summary["T"])


def bgnbd_outputs(model: BetaGeoFitter, summary: pd.DataFrame, horizon_periods: float) -> pd.DataFrame:
    """Per customer: p_alive, expected purchases in the horizon and P(no purchase in the horizon).

    P(no purchase) = 1 - P(alive) * (1 - P(0 purchases | alive)). lifetimes gives P(alive); given alive, BG/NBD's
    posterior purchase rate is Gamma(r + x, alpha + T), whose Poisson count over t is zero with probability
    ((alpha + T) / (alpha + T + t)) ** (r + x) (lifetimes has no conditional P(N = 0) for BG/NBD).
    """
    x, tx, T = (summary[c].to_numpy(float) for c in ("frequency", "recency", "T"))
    p_alive = np.asarray(model.conditional_probability_alive(x, tx, T), dtype=float)
    expected = np.asarray(
        model.conditional_expected_number_of_purchases_up_to_time(horizon_periods, x, tx, T), dtype=float
    )
    r, alpha = model.params_["r"], model.params_["alpha"]
    none_if_alive = ((alpha + T) / (alpha + T + horizon_periods)) ** (r + x)
    return pd.DataFrame(
        {
            "bg_p_alive": p_alive,
            "bg_expected_purchases": expected,
            "bg_p_no_purchase": 1 - p_alive * (1 - none_if_alive),
        },
        index=summary.index,
    )


def fit_gamma_gamma(summary: pd.DataFrame, penalizer: float = 0.0) -> GammaGammaFitter:
    """Gamma-Gamma spend model fitted by lifetimes on repeat customers (frequency > 0, positive spend)."""
    repeat = summary[(summary["frequency"] > 0) & (summary["monetary_value"] > 0)]
    if len(repeat) < 10:
        raise ValueError("Gamma-Gamma needs at least 10 repeat customers with positive spend")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return GammaGammaFitter(penalizer_coef=penalizer).fit(repeat["frequency"], repeat["monetary_value"])


def expected_spend(
    bgnbd: BetaGeoFitter, gamma_gamma: GammaGammaFitter, summary: pd.DataFrame, horizon_periods: float
) -> pd.Series:
    """Expected spend over the horizon: BG/NBD expected purchases x Gamma-Gamma expected order value (undiscounted).

    Customers without a repeat purchase get the Gamma-Gamma population mean order value (lifetimes' conditional
    expectation with frequency 0).
    """
    purchases = bgnbd_outputs(bgnbd, summary, horizon_periods)["bg_expected_purchases"]
    value = gamma_gamma.conditional_expected_average_profit(
        summary["frequency"], summary["monetary_value"].clip(lower=0)
    )
    return (purchases * np.asarray(value, dtype=float)).rename("bg_gg_clv")
