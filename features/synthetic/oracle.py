"""The churn oracle: P(churn label | true latent state at the cutoff), by re-simulating the synthetic retailer."""

from __future__ import annotations

import json
from datetime import date

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from features.synthetic.simulator import Campaigns, Simulator, simulate
from features.synthetic.tables import customer_ids
from features.synthetic.world import Dynamics, build_catalog, build_population, take
from patron.config import FeatureConfig, Settings

PARAMS_FILE = "synth_params.json"
ORACLE_STREAM = 4  # RNG stream id of the Monte-Carlo replicas (0-3 are used by the generator)


def campaigns_from(settings: Settings) -> Campaigns:
    """The retention-campaign policy the simulated retailer follows."""
    s = settings.synth
    return Campaigns(s.campaign_every_days, s.campaign_share, s.offer_effect_days, settings.features.lookback_days)


def read_params(settings: Settings) -> dict:
    """The parameters of the last generation (written beside the ground truth)."""
    path = settings.ground_truth_dir / PARAMS_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: no synthetic data generated yet (run `patron data synth`)")
    return json.loads(path.read_text())


def observed_labels(
    cust: np.ndarray, day: np.ndarray, n: int, t: int, lookback: int, horizon: int
) -> tuple[np.ndarray, np.ndarray]:
    """(active, churned) per customer index from purchase (customer index, day index) pairs, at cutoff day t."""
    active = np.zeros(n, bool)
    active[cust[(day >= t - lookback) & (day < t)]] = True
    future = np.zeros(n, bool)
    future[cust[(day >= t) & (day < t + horizon)]] = True
    return active, active & ~future


def _cutoff_day(features: FeatureConfig, params: dict, cutoff: date) -> int:
    t = (pd.Timestamp(cutoff).normalize() - pd.Timestamp(params["start_date"])).days
    h = features.horizon_days
    if t < 1 or t + h > params["days"]:
        raise ValueError(
            f"cutoff {cutoff}: the {h}-day horizon must lie inside the simulated "
            f"{params['days']} days from {params['start_date']}"
        )
    return t


def oracle_churn_probability(settings: Settings, cutoff: date, replicas: int | None = None) -> pd.DataFrame:
    """customer_id, active, oracle_p: share of Monte-Carlo futures (from the true state) with no purchase."""
    p = read_params(settings)
    t = _cutoff_day(settings.features, p, cutoff)
    h, lookback = settings.features.horizon_days, settings.features.lookback_days
    r = replicas or settings.synth.oracle_replicas
    dyn, camp, seed = Dynamics(), campaigns_from(settings), p["seed"]
    cat = build_catalog(p["items"], p["days"], seed, dyn)
    frames = []
    for chunk, first in enumerate(range(0, p["customers"], p["chunk_customers"])):
        pop = build_population(min(p["chunk_customers"], p["customers"] - first), cat, p["days"], seed, chunk, dyn)
        st = simulate(cat, pop, dyn, camp, seed, chunk, t).st
        active = st.last_purchase >= t - lookback
        prob = np.where(active, 1.0, np.nan)  # customers already gone never buy again
        mc = np.flatnonzero(active & st.alive)
        if len(mc):
            rep = np.repeat(mc, r)
            sim = Simulator(
                cat, take(pop, rep), take(st, rep), dyn, camp, np.random.default_rng([seed, ORACLE_STREAM, chunk, t])
            )
            bought = np.zeros(len(rep), bool)
            for d in range(t, t + h):
                bought |= sim.step(d)
            prob[mc] = 1 - bought.reshape(-1, r).mean(1)
        frames.append(
            pd.DataFrame(
                {
                    "customer_id": pd.Series(customer_ids(first + np.arange(len(active))).to_pylist(), dtype=str),
                    "active": active,
                    "oracle_p": pd.array(prob, dtype="Float64"),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def oracle_for(settings: Settings, cutoff: date, customer_ids: pd.Series) -> np.ndarray:
    """Oracle churn probabilities aligned to `customer_ids` (ValueError when the ground truth misses any)."""
    oracle = oracle_churn_probability(settings, cutoff).set_index("customer_id")["oracle_p"]
    p = oracle.reindex(customer_ids.astype(str)).to_numpy(dtype=float)
    if np.isnan(p).any():
        raise ValueError(
            "the ground truth does not cover the workspace's customers: "
            "was the workspace ingested from this synthetic retailer?"
        )
    return p


def churn_rates(settings: Settings, cutoff: date) -> dict[str, float]:
    """At a cutoff: active customers, the observable churn-label rate and the true dropout rate among them."""
    p = read_params(settings)
    t = _cutoff_day(settings.features, p, cutoff)
    f = settings.features
    start = pd.Timestamp(p["start_date"])
    ev = pq.read_table(
        f"{p['out']}/events.parquet", columns=["customer_id", "ts"], filters=[("type", "=", "purchase")]
    ).to_pandas()
    day = ((ev["ts"] - start) // pd.Timedelta(days=1)).to_numpy()
    codes, uniques = pd.factorize(ev["customer_id"])
    active, churned = observed_labels(codes, day, len(uniques), t, f.lookback_days, f.horizon_days)
    truth = pd.read_parquet(
        settings.ground_truth_dir / "customers_truth.parquet", columns=["customer_id", "churn_date"]
    )
    gone = truth.set_index("customer_id")["churn_date"].reindex(uniques[active])
    n = int(active.sum())
    horizon_end = start + pd.Timedelta(days=t + f.horizon_days)
    return {
        "active": n,
        "label_rate": churned[active].mean() if n else float("nan"),
        "truth_rate": float((gone < horizon_end).mean()) if n else float("nan"),
    }
