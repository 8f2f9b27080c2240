"""Distribution profiles (aggregates only, never rows) and the population stability index between two of them.

A profile of a numeric column holds its quantile bin edges and the share of rows in each bin plus the share
missing; a categorical column holds the share of each level (and of missing). Live data is binned with the
reference's edges, so PSI = sum((live - ref) x ln(live / ref)) over the same bins, each share floored at epsilon.
"""

from __future__ import annotations

from fnmatch import fnmatch
from typing import Any

import numpy as np
import pandas as pd

from patron.config import MonitorConfig

REFERENCE_ARTIFACT = "monitor/reference_profile.json"  # logged in the churn model's training run
MISSING = "__missing__"


def _numeric_edges(values: pd.Series, bins: int) -> list[float]:
    present = values.dropna().to_numpy(dtype=float)
    if len(present) == 0:
        return []
    return np.unique(np.quantile(present, np.linspace(0, 1, bins + 1))[1:-1]).tolist()


def _numeric_shares(values: pd.Series, edges: list[float]) -> dict[str, float]:
    arr = values.to_numpy(dtype=float, na_value=np.nan)
    present = arr[~np.isnan(arr)]
    n = max(len(arr), 1)
    counts = np.bincount(np.searchsorted(edges, present, side="right"), minlength=len(edges) + 1)
    return {**{str(i): float(c / n) for i, c in enumerate(counts)}, MISSING: float((len(arr) - len(present)) / n)}


def _categorical_shares(values: pd.Series) -> dict[str, float]:
    shares = values.astype(object).where(values.notna(), MISSING).astype(str).value_counts(normalize=True)
    return {str(k): float(v) for k, v in shares.items()}


def column_profile(values: pd.Series, bins: int) -> dict[str, Any]:
    """Bin edges (numeric) or levels (categorical, or numeric with at most `bins` distinct values) of one column
    and the share of rows in each."""
    if isinstance(values.dtype, pd.CategoricalDtype) or not pd.api.types.is_numeric_dtype(values):
        return {"kind": "categorical", "shares": _categorical_shares(values)}
    values = values.astype(float)
    # Counts such as tickets in 90 days are mostly 0: quantile edges would merge 1 and 4 into one bin.
    if values.nunique() <= bins:
        return {"kind": "discrete", "shares": _categorical_shares(values)}
    edges = _numeric_edges(values, bins)
    return {"kind": "numeric", "edges": edges, "shares": _numeric_shares(values, edges)}


def live_shares(values: pd.Series, reference: dict[str, Any]) -> dict[str, float]:
    """The share of live rows in each of the reference column's bins (or levels)."""
    if reference["kind"] == "numeric":
        return _numeric_shares(values.astype(float), reference["edges"])
    return _categorical_shares(values.astype(float) if reference["kind"] == "discrete" else values)


def psi(reference: dict[str, float], live: dict[str, float], epsilon: float) -> float:
    """Population stability index between two {bin: share} maps (bins missing from one side count as 0)."""
    keys = sorted(set(reference) | set(live))
    ref = np.maximum([reference.get(k, 0.0) for k in keys], epsilon)
    cur = np.maximum([live.get(k, 0.0) for k in keys], epsilon)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def frame_profile(
    features: pd.DataFrame, scores: np.ndarray, cfg: MonitorConfig, extra: dict[str, pd.Series] | None = None
) -> dict[str, Any]:
    """The reference profile of a feature frame and its churn scores; `extra`: more named columns (e.g. prices)."""
    return {
        "rows": int(len(features)),
        "bins": cfg.bins,
        "features": {c: column_profile(features[c], cfg.bins) for c in features.columns},
        "scores": column_profile(pd.Series(scores, dtype=float), cfg.bins),
        "extra": {name: column_profile(values, cfg.bins) for name, values in (extra or {}).items()},
    }


def compare(
    reference: dict[str, Any],
    features: pd.DataFrame,
    scores: np.ndarray,
    cfg: MonitorConfig,
    extra: dict[str, pd.Series] | None = None,
) -> pd.DataFrame:
    """PSI of every profiled column against live data: name, kind (feature/score/extra), psi, threshold, flagged."""
    rows = []
    live = {"feature": features, "score": {"churn_score": pd.Series(scores, dtype=float)}, "extra": extra or {}}
    profiles = {
        "feature": reference["features"],
        "score": {"churn_score": reference["scores"]},
        "extra": reference.get("extra", {}),
    }
    thresholds = {"feature": cfg.feature_psi_max, "score": cfg.score_psi_max, "extra": cfg.feature_psi_max}
    for kind, columns in profiles.items():
        for name, profile in columns.items():
            if name not in live[kind]:
                continue
            value = psi(profile["shares"], live_shares(live[kind][name], profile), cfg.psi_epsilon)
            ignored = any(fnmatch(name, pattern) for pattern in cfg.ignore_features)
            rows.append(
                {
                    "name": name,
                    "kind": kind,
                    "psi": round(value, 4),
                    "threshold": thresholds[kind],
                    "ignored": ignored,
                    "flagged": bool(value > thresholds[kind] and not ignored),
                }
            )
    return pd.DataFrame(rows, columns=["name", "kind", "psi", "threshold", "ignored", "flagged"])
