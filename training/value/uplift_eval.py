"""Uplift evaluation: Qini and uplift curves, their areas, and the value a targeting policy keeps under known effects.

Curves rank rows by estimated effect (highest first) and use retention (1 - churned) as the outcome. At the top share
phi of rows, with n_t / n_c treated / control rows and r_t / r_c of them retained:
- Qini curve: (r_t - r_c * n_t / n_c) / N_t, incremental customers retained per treated customer (N_t: all treated);
  the Qini coefficient is the area between it and the straight line of random targeting.
- uplift curve: (r_t / n_t - r_c / n_c) * phi; AUUC is the area under it (random targeting: ATE / 2).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from training.value.uplift_data import CONTROL


def _grid(n: int, bins: int) -> np.ndarray:
    return np.unique(np.ceil(np.linspace(0, 1, bins + 1)[1:] * n).astype(int) - 1)


def _cumulative(score: np.ndarray, treated: np.ndarray, retained: np.ndarray, curve: str) -> tuple[np.ndarray, ...]:
    if len(score) == 0 or not np.any(treated) or np.all(treated):
        raise ValueError(f"{curve}: need both treated and control rows")
    order = np.argsort(-np.asarray(score, dtype=float), kind="stable")
    t = np.asarray(treated, dtype=float)[order]
    r = np.asarray(retained, dtype=float)[order]
    return np.cumsum(t), np.cumsum(1 - t), np.cumsum(r * t), np.cumsum(r * (1 - t))


def qini_curve(
    score: np.ndarray, treated: np.ndarray, retained: np.ndarray, bins: int = 100
) -> tuple[np.ndarray, np.ndarray]:
    """(share targeted, incremental retained per treated customer), starting at (0, 0)."""
    nt, nc, rt, rc = _cumulative(score, treated, retained, "qini")
    idx = _grid(len(score), bins)
    q = (rt - rc * nt / np.maximum(nc, 1))[idx] / nt[-1]
    return np.r_[0.0, (idx + 1) / len(score)], np.r_[0.0, q]


def qini_coefficient(score: np.ndarray, treated: np.ndarray, retained: np.ndarray, bins: int = 100) -> float:
    """Area between the Qini curve and random targeting (positive: the ranking beats random)."""
    x, q = qini_curve(score, treated, retained, bins)
    return float(np.trapezoid(q - x * q[-1], x))


def uplift_curve(
    score: np.ndarray, treated: np.ndarray, retained: np.ndarray, bins: int = 100
) -> tuple[np.ndarray, np.ndarray]:
    """(share targeted, retention difference within the top share x that share), starting at (0, 0)."""
    nt, nc, rt, rc = _cumulative(score, treated, retained, "uplift curve")
    idx = _grid(len(score), bins)
    x = (idx + 1) / len(score)
    gap = np.where(
        (nt[idx] > 0) & (nc[idx] > 0), rt[idx] / np.maximum(nt[idx], 1) - rc[idx] / np.maximum(nc[idx], 1), 0.0
    )
    return np.r_[0.0, x], np.r_[0.0, gap * x]


def auuc(score: np.ndarray, treated: np.ndarray, retained: np.ndarray, bins: int = 100) -> float:
    """Area under the uplift curve."""
    x, u = uplift_curve(score, treated, retained, bins)
    return float(np.trapezoid(u, x))


def effect_metrics(estimates: pd.DataFrame, arm: np.ndarray, churned: np.ndarray, bins: int) -> dict[str, float]:
    """Qini coefficient, AUUC and observed effect per offer type and for each row's best estimated offer."""
    retained = 1 - np.asarray(churned, dtype=int)
    arm = np.asarray(arm)
    control = arm == CONTROL
    out: dict[str, float] = {}
    for k in estimates.columns:
        keep = control | (arm == k)
        args = (estimates[k].to_numpy()[keep], (arm == k)[keep], retained[keep], bins)
        out[f"qini_{k}"], out[f"auuc_{k}"] = qini_coefficient(*args), auuc(*args)
        out[f"ate_{k}"] = float(retained[arm == k].mean() - retained[control].mean())
    best = estimates.columns.to_numpy()[estimates.to_numpy().argmax(axis=1)]
    keep = control | (arm == best)
    args = (estimates.max(axis=1).to_numpy()[keep], (arm == best)[keep], retained[keep], bins)
    out["qini_best_offer"], out["auuc_best_offer"] = qini_coefficient(*args), auuc(*args)
    return out


def retained_value(
    order_score: np.ndarray, offer_index: np.ndarray, true_effects: np.ndarray, value: np.ndarray, count: int
) -> float:
    """Value kept by sending the top `count` rows of `order_score` their offer: sum of value x true effect."""
    top = np.argsort(-np.asarray(order_score, dtype=float), kind="stable")[:count]
    return float((value[top] * true_effects[top, offer_index[top]]).sum())


def targeting_comparison(
    estimates: pd.DataFrame,
    p_churn: np.ndarray,
    true_effects: pd.DataFrame,
    value: np.ndarray,
    share: float,
    risk_offer: str,
    seed: int,
) -> dict[str, float]:
    """Value kept under the true effects by four policies reaching the same number of rows.

    uplift: ranked by estimated best-offer effect x value, each sent its best estimated offer; risk: ranked by
    P(churn) x value, all sent `risk_offer`; random: random rows sent `risk_offer`; oracle: the true best.
    """
    if list(true_effects.columns) != list(estimates.columns):
        raise ValueError("true_effects: columns must match the estimates' offer types")
    est, truth = estimates.to_numpy(), true_effects.to_numpy()
    value = np.asarray(value, dtype=float)
    count = max(1, round(share * len(value)))
    fixed = np.full(len(value), list(estimates.columns).index(risk_offer))
    rng = np.random.default_rng(seed)
    out = {
        "uplift": retained_value(value * est.max(axis=1), est.argmax(axis=1), truth, value, count),
        "risk": retained_value(value * np.asarray(p_churn, dtype=float), fixed, truth, value, count),
        "random": retained_value(rng.random(len(value)), fixed, truth, value, count),
        "oracle": retained_value(value * truth.max(axis=1), truth.argmax(axis=1), truth, value, count),
    }
    out["ratio_uplift_to_risk"] = out["uplift"] / out["risk"] if out["risk"] > 0 else float("nan")
    out["targeted"] = float(count)
    return out
