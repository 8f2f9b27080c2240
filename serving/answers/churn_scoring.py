"""Churn probabilities, risk tiers and plain-language reasons from the champion ChurnModel (API and batch scoring)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from features.pit.feature_text import FEATURE_DESCRIPTIONS, FEATURE_GROUPS, GROUP_PHRASES, MISSING_PHRASES
from features.tables.store import read_table
from patron.config import ChurnConfig, Settings
from training.churn.model import ChurnModel

TOP_REASONS = 3
# A reason about one feature reads better with a companion feature next to it.
_COMPANIONS = {"days_since_last_purchase": ("gap_mean_days", "usually every {value:.0f}")}


class EncodedFeatures:
    """A feature frame encoded once for one model (ChurnModel.matrix: LightGBM would convert a DataFrame on every
    predict call, milliseconds for one row), its rows looked up by customer id."""

    def __init__(self, model: ChurnModel, features: pd.DataFrame) -> None:
        self.model = model
        self.matrix = model.matrix(features) if len(features) else np.empty((0, 0))
        self.row_of = {c: i for i, c in enumerate(features["customer_id"].astype(str))}

    def rows(self, features: pd.DataFrame) -> np.ndarray:
        """The encoded rows of `features` (customers of the encoded frame, in its order)."""
        return self.matrix[[self.row_of[c] for c in features["customer_id"].astype(str)]]


def _descriptions() -> dict[str, str]:
    return FEATURE_DESCRIPTIONS


def _groups() -> tuple[dict[str, str], dict[str, str]]:
    return FEATURE_GROUPS, GROUP_PHRASES


def _plain(value: Any) -> float | str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    if isinstance(value, (int, float, np.integer, np.floating, bool, np.bool_)):
        return float(value)
    return str(value)


def reason_text(feature: str, row: pd.Series, descriptions: dict[str, str]) -> str:
    """Plain-language phrase for one feature of one customer (e.g. "no purchase in 74 days, usually every 21")."""
    value = _plain(row.get(feature))
    if value is None:
        return MISSING_PHRASES.get(feature, f"no {feature.replace('_', ' ')} on record")
    try:
        text = descriptions[feature].format(value=value)
    except (KeyError, ValueError, TypeError):
        text = f"{feature.replace('_', ' ')}: {value}"
    companion = _COMPANIONS.get(feature)
    if companion is not None and _plain(row.get(companion[0])) is not None:
        text += ", " + companion[1].format(value=_plain(row.get(companion[0])))
    return text


def group_text(
    group: str, members: list[str], lead: str, row: pd.Series, descriptions: dict[str, str], phrases: dict[str, str]
) -> str:
    """One phrase for a group of features (e.g. "2 unresolved support tickets, the oldest open for 40 days").

    Falls back to the lead feature's own phrase when the group has none or a member has no value.
    """
    values = {m: _plain(row.get(m)) for m in members}
    phrase = phrases.get(group)
    if phrase is not None and len(members) > 1:
        try:
            return phrase.format(**values)
        except (KeyError, ValueError, TypeError):
            pass
    return reason_text(lead, row, descriptions)


@lru_cache(maxsize=16)
def _grouping(
    names: tuple[str, ...], feature_group: tuple[tuple[str, str], ...]
) -> tuple[list[str], np.ndarray, np.ndarray, list[np.ndarray]]:
    """Group names, a column order that puts each group's features together, where each group starts in it, and each
    group's feature positions (cached per model)."""
    keys = pd.Categorical([dict(feature_group).get(n, n) for n in names])
    order = np.argsort(keys.codes, kind="stable")
    starts = np.searchsorted(keys.codes[order], np.arange(len(keys.categories)))
    members = [np.flatnonzero(keys.codes == g) for g in range(len(keys.categories))]
    return [str(c) for c in keys.categories], order, starts, members


@dataclass(frozen=True)
class Explanation:
    """Probabilities and top reasons of scored rows as positions; `reasons` renders one row's reason records."""

    probability: np.ndarray  # (n,)
    group: np.ndarray  # (n, TOP_REASONS): group position of each reason, -1 where the row has fewer
    lead: np.ndarray  # (n, TOP_REASONS): feature position of the group's largest contribution
    contribution: np.ndarray  # (n, TOP_REASONS): the group's summed contribution
    names: list[str]
    group_names: list[str]
    members: list[np.ndarray]

    def reasons(
        self, i: int, row: Mapping[str, Any], descriptions: dict[str, str], phrases: dict[str, str]
    ) -> list[dict[str, Any]]:
        """Row i's reasons, `row` holding its feature values (a Series or any mapping with .get)."""
        out = []
        for g, lead, value in zip(self.group[i], self.lead[i], self.contribution[i]):
            if g < 0:
                continue
            name = self.names[lead]
            out.append(
                {
                    "feature": name,
                    "group": self.group_names[g],
                    "value": _plain(row.get(name)),
                    "contribution": float(value),
                    "text": group_text(
                        self.group_names[g], [self.names[j] for j in self.members[g]], name, row, descriptions, phrases
                    ),
                }
            )
        return out


def explain(
    model: ChurnModel,
    X: pd.DataFrame | np.ndarray,
    feature_group: dict[str, str],
    num_threads: int = 0,
    probability: np.ndarray | None = None,
    names: list[str] | None = None,
) -> Explanation:
    """Probabilities and the top positive LightGBM contributions per row, summed over the features of one group.

    `num_threads`: LightGBM's threads for these predictions (0: its default, every core); `probability` and `names`
    (the model's feature names): already known, not asked again."""
    names = model.feature_name() if names is None else names
    if probability is None:
        probability = np.asarray(model.predict(X, num_threads=num_threads), dtype=float)
    contrib = model.predict(X, pred_contrib=True, num_threads=num_threads)[:, : len(names)]  # last: expected value
    group_names, order, starts, members = _grouping(tuple(names), tuple(sorted(feature_group.items())))
    # Sums within each row (not a matrix product, whose BLAS kernel and rounding can depend on the number of rows):
    # a customer's reasons are the same bits whether scored alone or with the whole population.
    summed = np.add.reduceat(contrib[:, order], starts, axis=1)
    top = np.argsort(-summed, axis=1, kind="stable")[:, :TOP_REASONS]
    rows = np.arange(len(X))[:, None]
    contribution = summed[rows, top]
    in_group = np.zeros((len(group_names), len(names)), dtype=bool)
    for g, m in enumerate(members):
        in_group[g, m] = True
    lead = np.stack(
        [np.argmax(np.where(in_group[top[:, r]], contrib, -np.inf), axis=1) for r in range(top.shape[1])], axis=1
    )
    group = np.where(contribution > 0, top, -1)  # only positive reasons (a NaN sum cannot occur in LightGBM)
    return Explanation(probability, group, lead, contribution, names, group_names, members)


def score_frame(
    model: ChurnModel,
    features: pd.DataFrame,
    churn: ChurnConfig,
    descriptions: dict[str, str] | None = None,
    groups: tuple[dict[str, str], dict[str, str]] | None = None,
    encoded: EncodedFeatures | None = None,
) -> pd.DataFrame:
    """customer_id, churn_probability, risk_tier and reasons per row.

    Reasons: the top positive LightGBM contributions, those of features in one group (feature -> group, group ->
    phrase; default FEATURE_GROUPS and GROUP_PHRASES) summed into one reason named by its largest member.
    `encoded`: the same rows already encoded for this model (the service's per-request path).
    """
    columns = ["customer_id", "churn_probability", "risk_tier", "reasons"]
    if features.empty:
        return pd.DataFrame(columns=columns)
    descriptions = _descriptions() if descriptions is None else descriptions
    feature_group, phrases = _groups() if groups is None else groups
    names = model.feature_name()
    X = encoded.rows(features) if encoded is not None and encoded.model is model else features[names]
    ex = explain(model, X, feature_group)
    reasons = [ex.reasons(i, row, descriptions, phrases) for i, (_, row) in enumerate(features.iterrows())]
    return pd.DataFrame(
        {
            "customer_id": features["customer_id"].astype(str).to_numpy(),
            "churn_probability": ex.probability,
            "risk_tier": [churn.tier(float(p)) for p in ex.probability],
            "reasons": reasons,
        },
        columns=columns,
    )


def score_customers(
    model: ChurnModel,
    features: pd.DataFrame,
    customer_ids: Iterable[str],
    churn: ChurnConfig,
    encoded: EncodedFeatures | None = None,
) -> list[dict[str, Any]]:
    """One score record per requested id, in request order; ids without a feature row come back known=False."""
    ids = list(customer_ids)
    known = features[features["customer_id"].isin(set(ids))].drop_duplicates("customer_id")
    scored = score_frame(model, known, churn, encoded=encoded).set_index("customer_id")
    out = []
    for cid in ids:
        if cid in scored.index:
            r = scored.loc[cid]
            out.append(
                {
                    "customer_id": cid,
                    "churn_probability": float(r["churn_probability"]),
                    "risk_tier": r["risk_tier"],
                    "reasons": r["reasons"],
                    "known": True,
                }
            )
        else:
            out.append(unknown_score(cid))
    return out


def unknown_score(customer_id: str) -> dict[str, Any]:
    """The score record of a customer without a feature row."""
    return {"customer_id": customer_id, "churn_probability": None, "risk_tier": None, "reasons": [], "known": False}


def flatten_reasons(scored: pd.DataFrame) -> pd.DataFrame:
    """Replace the reasons column with text columns reason_1..reason_N (empty string when fewer)."""
    out = scored.drop(columns="reasons").copy()
    for n in range(TOP_REASONS):
        out[f"reason_{n + 1}"] = [r[n]["text"] if len(r) > n else "" for r in scored["reasons"]]
    return out


def active_customer_ids(settings: Settings, cutoff: pd.Timestamp) -> set[str]:
    """Customers with a purchase in [cutoff - lookback_days, cutoff): the population churn scores are for."""
    events = read_table(settings.tables_dir, "events", columns=["customer_id", "ts", "type"])
    start = cutoff - pd.Timedelta(days=settings.features.lookback_days)
    recent = events[(events["type"] == "purchase") & (events["ts"] >= start) & (events["ts"] < cutoff)]
    return set(recent["customer_id"].astype(str))


def score_population(
    model: ChurnModel, features: pd.DataFrame, churn: ChurnConfig, batch_size: int, progress: bool = True
) -> pd.DataFrame:
    """Score every row of `features` in batches (tqdm bar when there is more than one), riskiest first."""
    starts = range(0, len(features), batch_size)
    descriptions = _descriptions()
    parts = [
        score_frame(model, features.iloc[s : s + batch_size], churn, descriptions)
        for s in tqdm(starts, desc="churn scores", unit="batch", disable=not progress or len(starts) <= 1)
    ]
    scored = pd.concat(parts, ignore_index=True) if parts else score_frame(model, features, churn, descriptions)
    return scored.sort_values(["churn_probability", "customer_id"], ascending=[False, True], ignore_index=True)
