"""The retention plan: at most one offer per consenting customer, chosen to maximise expected net value in a budget.

Expected net value of sending offer o to customer i = P(churn_i) x CLV_i x uplift_rel(o) - cost(o), where
uplift_rel = tau_io / P(churn_i) and tau_io is the uplift model's absolute reduction in P(churn); so it equals
CLV_i x tau_io - cost(o). Choosing the offers is a multiple-choice knapsack (serving/answers/offer_allocation.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.pit.build import customer_features, data_end
from features.pit.purchase_sequence import purchases, sequence_features
from features.pit.segments import customer_segments
from features.privacy.consent import consent_refusals
from features.tables.export import write_csv_or_parquet
from patron.config import RetentionConfig, Settings
from serving.answers.churn_scoring import active_customer_ids, score_frame
from serving.answers.offer_allocation import Allocation, allocate, candidate_pairs
from serving.answers.priority import priority
from serving.champions import load as champions
from training.value.clv import btyd_clv

PLAN_COLUMNS = [
    "customer_id",
    "lifecycle_stage",
    "value_tier",
    "rfm_score",
    "churn_probability",
    "clv",
    "offer_type",
    "cost",
    "expected_net_value",
    "top_reasons",
    "preferred_channel",
]
SEGMENT_COLUMNS = ["lifecycle_stage", "value_tier", "rfm_score"]


@dataclass(frozen=True)
class CustomerValue:
    """Per-customer plan inputs that do not depend on the churn model: CLV, offer effects, segments, consent."""

    clv: pd.Series  # by customer_id
    effects: pd.DataFrame  # by customer_id, one column per offer type: absolute reduction in P(churn)
    segments: pd.DataFrame  # by customer_id: SEGMENT_COLUMNS
    marketing_refused: frozenset[str]
    active: frozenset[str]  # customers the plan considers: a purchase in the lookback before the cutoff
    clv_version: str
    uplift_version: str

    def offer_types(self) -> list[str]:
        """Offer types the uplift model has effects for."""
        return [str(c) for c in self.effects.columns]

    def customer_extras(self, customer_ids: list[str], offers: dict[str, float]) -> list[dict[str, Any]]:
        """Per id: segment, CLV, the best offer (highest positive expected net value; none without consent) and the
        priority it gives (serving/answers/priority.py). Ids without a CLV get an empty dict.
        """
        known = pd.Index([c for c in dict.fromkeys(customer_ids) if c in self.clv.index], dtype=object)
        pairs = candidate_pairs(self.clv.reindex(known.difference(list(self.marketing_refused))), self.effects, offers)
        pairs = pairs[pairs["expected_net_value"] > 0].sort_values("expected_net_value", ascending=False)
        best = pairs.drop_duplicates("customer_id").set_index("customer_id")
        segments = self.segments.reindex(known)
        offer = {
            c: {"offer_type": o, "expected_net_value": float(v)}
            for c, o, v in zip(best.index, best["offer_type"], best["expected_net_value"])
        }
        extras = {
            c: {
                "segment": {k: _plain(segments.at[c, k]) for k in SEGMENT_COLUMNS},
                "clv": float(self.clv.at[c]),
                "best_offer": offer.get(c),
                "priority": priority(offer.get(c), c not in self.marketing_refused),
            }
            for c in known
        }
        return [extras.get(c, {}) for c in customer_ids]


@dataclass(frozen=True)
class RetentionPlan:
    """The plan rows (PLAN_COLUMNS) and the allocation behind them."""

    rows: pd.DataFrame
    allocation: Allocation
    eligible: int  # customers scored who allow marketing
    skipped_no_consent: int

    def totals(self) -> dict[str, float | int | str | bool]:
        """Customers, spend, expected net value, solver and its bound."""
        return {
            "customers": len(self.rows),
            "spend": round(self.allocation.spend, 2),
            "expected_net_value": round(self.allocation.value, 2),
            "eligible_customers": self.eligible,
            "skipped_no_consent": self.skipped_no_consent,
            "solver": self.allocation.method,
            "optimal": self.allocation.optimal,
            "upper_bound": round(self.allocation.upper_bound, 2),
        }

    def summary(self) -> str:
        """One line for the command line."""
        t = self.totals()
        counts = ", ".join(f"{k}: {v}" for k, v in self.rows["offer_type"].value_counts().items()) or "no offer"
        return (
            f"{t['customers']} customers get an offer ({counts}), spend {t['spend']:.2f}, expected net value "
            f"{t['expected_net_value']:.2f} ({t['solver']}{', optimal' if t['optimal'] else ''}, bound "
            f"{t['upper_bound']:.2f}); {t['eligible_customers']} eligible, "
            f"{t['skipped_no_consent']} skipped without marketing consent"
        )


def _plain(value: Any) -> Any:
    return None if value is None or (not isinstance(value, str) and pd.isna(value)) else str(value)


def parse_offers(offers: dict[str, float] | list[dict], known: list[str]) -> dict[str, float]:
    """{offer_type: cost} from a mapping or [{offer_type, cost}] (ValueError naming the field when bad); an offer type
    listed twice is offered at its lower cost (the plan would never pick the dearer of two identical offers)."""
    items = list(offers.items()) if isinstance(offers, dict) else [(o.get("offer_type"), o.get("cost")) for o in offers]
    if not items:
        raise ValueError("offers: at least one offer is needed")
    out: dict[str, float] = {}
    for n, (name, cost) in enumerate(items):
        if name not in known:
            raise ValueError(f"offers[{n}].offer_type: unknown offer type {name!r}; expected one of {sorted(known)}")
        if not isinstance(cost, (int, float)) or isinstance(cost, bool) or not np.isfinite(cost) or cost <= 0:
            raise ValueError(f"offers[{n}].cost: must be a number above 0, got {cost!r}")
        out[str(name)] = min(float(cost), out.get(str(name), np.inf))
    return out


def build_plan(
    scored: pd.DataFrame,
    value: CustomerValue,
    offers: dict[str, float],
    budget: float,
    max_customers: int | None,
    cfg: RetentionConfig,
    channels: pd.Series | None = None,
    reasons_for: Callable[[pd.Index], pd.Series] | None = None,
) -> RetentionPlan:
    """Plan from churn scores (customer_id, churn_probability[, reasons]): consenting customers, best offers.

    Without a reasons column, `reasons_for(chosen ids)` gives them (so only the chosen customers are explained).
    """
    ids = scored["customer_id"].astype(str)
    allowed = ~ids.isin(value.marketing_refused)
    eligible = ids[allowed]
    pairs = candidate_pairs(value.clv.reindex(eligible).dropna(), value.effects, offers)
    allocation = allocate(pairs, budget, max_customers, cfg)
    chosen = allocation.chosen.set_index("customer_id")
    by_id = scored.assign(customer_id=ids).set_index("customer_id").loc[chosen.index]
    if "reasons" in by_id:
        reasons = by_id["reasons"]
    else:
        reasons = (
            reasons_for(by_id.index)
            if reasons_for is not None and len(by_id)
            else pd.Series([[]] * len(by_id), index=by_id.index, dtype=object)
        )
    segments = value.segments.reindex(chosen.index)
    rows = pd.DataFrame(
        {
            "customer_id": chosen.index.to_numpy(),
            **{c: (segments[c].to_numpy() if c in segments else None) for c in SEGMENT_COLUMNS},
            "churn_probability": by_id["churn_probability"].to_numpy(float),
            "clv": value.clv.reindex(chosen.index).to_numpy(float),
            "offer_type": chosen["offer_type"].to_numpy(),
            "cost": chosen["cost"].to_numpy(float),
            "expected_net_value": chosen["expected_net_value"].to_numpy(float),
            "top_reasons": ["; ".join(r["text"] for r in rs[: cfg.top_reasons]) for rs in reasons],
            "preferred_channel": (
                None
                if channels is None
                else channels.reindex(chosen.index).astype(object).where(lambda s: s.notna(), None).to_numpy()
            ),
        },
        columns=PLAN_COLUMNS,
    )
    return RetentionPlan(rows, allocation, eligible=int(allowed.sum()), skipped_no_consent=int((~allowed).sum()))


def realised_value(rows: pd.DataFrame, true_effects: pd.DataFrame) -> float:
    """The plan's net value under the generator's true effects (churn_prob_effect < 0 helps): CLV x tau - cost."""
    truth = true_effects.assign(tau=-true_effects["churn_prob_effect"].astype(float))
    merged = rows[["customer_id", "offer_type", "clv", "cost"]].merge(
        truth[["customer_id", "offer_type", "tau"]], on=["customer_id", "offer_type"], how="left", validate="1:1"
    )
    if merged["tau"].isna().any():
        raise ValueError("true_effects: no true effect for some planned (customer, offer) pairs")
    return float((merged["clv"] * merged["tau"] - merged["cost"]).sum())


# --- the workspace's inputs ------------------------------------------------------------------------------------


def clv_horizon_days(settings: Settings, version: str) -> int:
    """The horizon a registered CLV version was trained for (its run's horizon_days; else the configured one)."""
    client = champions.registry_client(settings)
    run_id = client.get_model_version(settings.tracking.clv_model, version).run_id
    return int(client.get_run(run_id).data.params.get("horizon_days", settings.clv.horizon_days))


def predict_clv(
    settings: Settings, booster: Any, features: pd.DataFrame, cutoff: pd.Timestamp, horizon_days: int
) -> pd.Series:
    """Expected spend over the horizon per customer, built as `patron train clv` built its training rows."""
    lines = purchases(settings)
    ids = features["customer_id"].astype(str)
    X = (
        features.drop(columns="customer_id")
        .set_index(ids)
        .join(sequence_features(lines, cutoff))
        .join(btyd_clv(settings, lines, cutoff, horizon_days))
    )
    return pd.Series(np.clip(booster.predict(X[booster.feature_name()]), 0, None), index=ids, name="clv")


def offer_effects(model: Any, features: pd.DataFrame) -> pd.DataFrame:
    """The uplift model's effects (absolute reduction in P(churn) per offer type), indexed by customer_id."""
    effects = model.effects(features)
    if "customer_id" in effects.columns:
        return effects.assign(customer_id=effects["customer_id"].astype(str)).set_index("customer_id")
    if len(effects) != len(features):
        raise ValueError("uplift model: effects() must give one row per customer")
    return effects.set_axis(features["customer_id"].astype(str).to_numpy(), axis=0)


def load_customer_value(settings: Settings, features: pd.DataFrame, cutoff: pd.Timestamp) -> CustomerValue:
    """CLV, offer effects and segments of every customer in `features` from the registered models; consent."""
    uplift, uplift_version = champions.load_uplift_champion(settings)  # first: the cheaper one to find missing
    clv_booster, clv_version = champions.load_clv_champion(settings)
    clv = predict_clv(settings, clv_booster, features, cutoff, clv_horizon_days(settings, clv_version))
    segments = customer_segments(features, clv, settings.segments).set_index("customer_id")
    return CustomerValue(
        clv=clv,
        effects=offer_effects(uplift, features),
        segments=segments[SEGMENT_COLUMNS],
        marketing_refused=consent_refusals(settings, "marketing"),
        active=frozenset(active_customer_ids(settings, cutoff)),
        clv_version=str(clv_version),
        uplift_version=str(uplift_version),
    )


def plan_for(
    settings: Settings,
    booster: Any,
    features: pd.DataFrame,
    value: CustomerValue,
    offers: dict[str, float] | list[dict] | None,
    budget: float,
    max_customers: int | None,
) -> RetentionPlan:
    """The plan over `features` (the customers to consider) with the churn booster's probabilities and reasons."""
    chosen_offers = parse_offers(settings.retention.offers if offers is None else offers, value.offer_types())
    names = booster.feature_name()
    scored = pd.DataFrame(
        {
            "customer_id": features["customer_id"].astype(str).to_numpy(),
            "churn_probability": np.asarray(booster.predict(features[names]), dtype=float),
        }
    )
    by_id = features.assign(customer_id=features["customer_id"].astype(str)).set_index("customer_id", drop=False)

    def reasons_for(ids: pd.Index) -> pd.Series:
        explained = score_frame(booster, by_id.loc[ids].reset_index(drop=True), settings.churn)
        return explained.set_index("customer_id")["reasons"].reindex(ids)

    channels = by_id.get("preferred_channel")
    return build_plan(scored, value, chosen_offers, budget, max_customers, settings.retention, channels, reasons_for)


def read_offers(path: Path) -> dict[str, float] | list[dict]:
    """Offers from a YAML/JSON file ({offer_type: cost} or [{offer_type, cost}]) or a CSV (offer_type, cost)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"offers: {path} does not exist")
    if path.suffix.lower() == ".csv":
        return pd.read_csv(path).to_dict(orient="records")
    data = yaml.safe_load(path.read_text())
    if isinstance(data, dict) and "offers" in data:
        data = data["offers"]
    if not isinstance(data, (dict, list)):
        raise ValueError(f"offers: {path} must hold a mapping offer_type -> cost or a list of {{offer_type, cost}}")
    return data


def workspace_plan(
    settings: Settings,
    budget: float,
    offers: dict[str, float] | list[dict] | None = None,
    max_customers: int | None = None,
) -> RetentionPlan:
    """The plan for the customers active at the latest cutoff, from the registered churn, CLV and uplift models."""
    if budget < 0:
        raise ValueError(f"budget: must be at least 0, got {budget}")
    cutoff = data_end(settings)
    features = customer_features(settings, cutoff)
    value = load_customer_value(settings, features, cutoff)
    booster, _ = champions.load_churn_champion(settings)
    active = features[features["customer_id"].astype(str).isin(value.active)]
    return plan_for(settings, booster, active, value, offers, budget, max_customers)


def write_plan(plan: RetentionPlan, path: Path) -> Path:
    """Write the plan rows to CSV or Parquet (by extension), atomically."""
    return write_csv_or_parquet(plan.rows, Path(path))


def churn_ranked_plan(pairs: pd.DataFrame, churn: pd.Series, budget: float) -> pd.DataFrame:
    """The naive plan: riskiest customers first, each with their best positive offer, until the budget is spent."""
    best = pairs[pairs["expected_net_value"] > 0].sort_values("expected_net_value", ascending=False)
    best = best.drop_duplicates("customer_id").set_index("customer_id")
    order = churn.reindex(best.index).sort_values(ascending=False, kind="stable").index
    spent = best.loc[order, "cost"].cumsum()
    return best.loc[spent[spent <= budget].index].reset_index()


def plan_vs_truth(settings: Settings, budget: float, offers: dict[str, float] | None = None) -> dict[str, float]:
    """Synthetic data: the plan's expected value and its value under the generator's true effects, beside the
    churn-ranked plan's and the best plan's when the true effects are known (same CLV, consenting customers)."""
    path = settings.ground_truth_dir / "treatment_effects.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the plan can be checked on synthetic data only")
    truth = pd.read_parquet(path)
    tau = truth.pivot(index="customer_id", columns="offer_type", values="churn_prob_effect").astype(float).mul(-1)
    cutoff = data_end(settings)
    features = customer_features(settings, cutoff)
    value = load_customer_value(settings, features, cutoff)
    booster, _ = champions.load_churn_champion(settings)
    active = features[features["customer_id"].astype(str).isin(value.active)]
    plan = plan_for(settings, booster, active, value, offers, budget, None)
    eligible = sorted(value.active - value.marketing_refused)
    chosen_offers = parse_offers(settings.retention.offers if offers is None else offers, value.offer_types())
    clv = value.clv.reindex(eligible).dropna()
    churn = pd.Series(booster.predict(active[booster.feature_name()]), index=active["customer_id"].astype(str))
    naive = churn_ranked_plan(candidate_pairs(clv, value.effects, chosen_offers), churn, budget)
    naive = naive.assign(clv=clv.reindex(naive["customer_id"]).to_numpy())
    oracle = allocate(candidate_pairs(clv, tau, chosen_offers), budget, None, settings.retention)
    return {
        "budget": budget,
        "customers": len(plan.rows),
        "spend": plan.allocation.spend,
        "expected_net_value": plan.allocation.value,
        "realised_net_value": realised_value(plan.rows, truth),
        "churn_ranked_expected": float(naive["expected_net_value"].sum()),
        "churn_ranked_realised": realised_value(naive, truth),
        "oracle_net_value": oracle.value,
        "eligible_customers": plan.eligible,
    }
