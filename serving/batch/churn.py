"""`patron score churn`: churn scores and segments of every active customer at the current cutoff, to a file; with
the CLV and uplift models registered, also the best offer, its expected net value and the priority it gives."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from mlflow.exceptions import MlflowException

from features.pit.build import customer_features, data_end
from features.pit.segments import customer_segments
from features.tables.export import write_csv_or_parquet
from patron.config import Settings
from serving.answers.churn_scoring import active_customer_ids, flatten_reasons, score_population
from serving.answers.priority import offer_value
from serving.answers.retention_plan import CustomerValue, clv_horizon_days, load_customer_value, predict_clv
from serving.champions import load as champions


@dataclass(frozen=True)
class ScoreReport:
    """What a batch scoring run wrote."""

    path: Path
    rows: int
    model_version: str
    cutoff: pd.Timestamp
    tier_counts: dict[str, int]

    def summary(self) -> str:
        tiers = ", ".join(f"{k}: {v}" for k, v in self.tier_counts.items()) or "none"
        return (
            f"{self.rows} customers scored at cutoff {self.cutoff.date()} with patron-churn "
            f"v{self.model_version} ({tiers}) -> {self.path}"
        )


def tiers_at_or_above(settings: Settings, min_tier: str) -> set[str]:
    """Risk tiers whose lower bound is at least min_tier's (ValueError naming min_tier when unknown)."""
    tiers = settings.churn.risk_tiers
    if min_tier not in tiers:
        raise ValueError(f"min_tier: unknown risk tier {min_tier!r}; expected one of {sorted(tiers)}")
    return {name for name, bound in tiers.items() if bound >= tiers[min_tier]}


def churn_segments(settings: Settings, features: pd.DataFrame, cutoff: pd.Timestamp) -> pd.DataFrame:
    """customer_id, RFM scores, lifecycle stage and value tier (from the CLV model; "unknown" without one)."""
    try:
        booster, version = champions.load_clv_champion(settings)
    except (LookupError, MlflowException):  # no CLV model registered: segments without a value tier
        clv = None
    else:
        clv = predict_clv(settings, booster, features, cutoff, clv_horizon_days(settings, version))
    return customer_segments(features, clv, settings.segments)


def customer_value(settings: Settings, features: pd.DataFrame, cutoff: pd.Timestamp) -> CustomerValue | None:
    """The retention plan's inputs (CLV, offer effects, consent); None when the CLV or uplift model is missing."""
    try:
        return load_customer_value(settings, features, cutoff)
    except (LookupError, MlflowException):
        return None


def offer_columns(settings: Settings, value: CustomerValue, features: pd.DataFrame) -> pd.DataFrame:
    """customer_id, best_offer_type, expected_net_value (of the best offer; 0 without one) and priority
    (serving/answers/priority.py)."""
    ids = features["customer_id"].astype(str).tolist()
    extras = value.customer_extras(ids, settings.retention.offers)
    return pd.DataFrame(
        {
            "customer_id": ids,
            "best_offer_type": [(e.get("best_offer") or {}).get("offer_type") for e in extras],
            "expected_net_value": [offer_value(e.get("best_offer")) for e in extras],
            "priority": [e.get("priority") for e in extras],
        }
    )


def score_churn(
    settings: Settings, out: Path | None = None, min_tier: str | None = None, progress: bool = True
) -> ScoreReport:
    """Score the customers active at the current cutoff with the churn champion, riskiest first."""
    path = Path(out) if out is not None else settings.outputs_dir / "churn_scores.parquet"
    keep = tiers_at_or_above(settings, min_tier) if min_tier else None
    if path.suffix.lower() not in {".csv", ".parquet"}:
        raise ValueError(f"out: {path} must end in .csv or .parquet")
    booster, version = champions.load_churn_champion(settings)
    cutoff = data_end(settings)
    features = customer_features(settings, cutoff)
    features = features[features["customer_id"].isin(active_customer_ids(settings, cutoff))]
    scored = flatten_reasons(score_population(booster, features, settings.churn, settings.serving.max_batch, progress))
    if keep is not None:
        scored = scored[scored["risk_tier"].isin(keep)].reset_index(drop=True)
    value = customer_value(settings, features, cutoff)
    segments = (
        churn_segments(settings, features, cutoff)
        if value is None
        else customer_segments(features, value.clv, settings.segments)
    ).drop_duplicates("customer_id")
    scored = scored.merge(
        segments.astype({"customer_id": scored["customer_id"].dtype}),
        on="customer_id",
        how="left",
        validate="one_to_one",
    )
    if value is not None:
        offers = offer_columns(settings, value, features)
        scored = scored.merge(
            offers.astype({"customer_id": scored["customer_id"].dtype}), on="customer_id", how="left", validate="1:1"
        )
    scored["model_version"] = version
    scored["cutoff"] = cutoff
    write_csv_or_parquet(scored, path)
    return ScoreReport(
        path=path,
        rows=len(scored),
        model_version=version,
        cutoff=cutoff,
        tier_counts={
            t: int((scored["risk_tier"] == t).sum())
            for t in sorted(settings.churn.risk_tiers, key=settings.churn.risk_tiers.get, reverse=True)
        },
    )
