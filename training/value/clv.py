"""Customer lifetime value: expected spend over a horizon, LightGBM on point-in-time features vs BG/NBD + Gamma-Gamma.

Evaluation is at one cutoff whose horizon lies inside the data, by customer-disjoint cross-validation: no fold
trains on its test customers' future spend. The BG/NBD and Gamma-Gamma models (lifetimes) are fitted on the
training customers' history before the cutoff and their outputs are features of Patron's model too (stacking).
"""

from __future__ import annotations

import lightgbm as lgb
import mlflow
import mlflow.lightgbm
import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.metrics import mean_absolute_error, root_mean_squared_error

from features.pit import build
from features.pit.cutoffs import data_end
from features.pit.purchase_sequence import purchases, sequence_features
from features.tables.store import fingerprint
from patron.config import Settings
from training.mlops import registry, tracking
from training.mlops.splits import customer_folds
from training.value import btyd

MODEL = "clv"
TARGET = "future_spend"


def revenue_captured(actual: np.ndarray, predicted: np.ndarray, share: float) -> float:
    """Share of the total actual spend made by the `share` of customers with the highest predicted CLV."""
    actual = np.asarray(actual, dtype=float)
    top = np.argsort(-np.asarray(predicted, dtype=float), kind="stable")[: max(1, int(round(len(actual) * share)))]
    total = actual.sum()
    return float(actual[top].sum() / total) if total > 0 else float("nan")


def clv_metrics(actual: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """MAE, RMSE, Spearman rank correlation, revenue captured by the top 10% / 20%, predicted / actual total."""
    actual, predicted = np.asarray(actual, dtype=float), np.asarray(predicted, dtype=float)
    if len(actual) < 2:
        raise ValueError("clv_metrics: need at least two customers")
    return {
        "mae": float(mean_absolute_error(actual, predicted)),
        "rmse": float(root_mean_squared_error(actual, predicted)),
        "spearman": float(spearmanr(actual, predicted).statistic),
        "top10_revenue_share": revenue_captured(actual, predicted, 0.1),
        "top20_revenue_share": revenue_captured(actual, predicted, 0.2),
        "predicted_total_ratio": float(predicted.sum() / actual.sum()) if actual.sum() > 0 else float("nan"),
    }


def future_spend(lines: pd.DataFrame, cutoff: pd.Timestamp, horizon_days: int) -> pd.Series:
    """Spend per customer in [cutoff, cutoff + horizon)."""
    window = lines[(lines["ts"] >= cutoff) & (lines["ts"] < cutoff + pd.Timedelta(days=horizon_days))]
    return window.groupby("customer_id")["value"].sum().rename(TARGET)


def clv_frame(settings: Settings, cutoff: pd.Timestamp, horizon_days: int, lines: pd.DataFrame) -> pd.DataFrame:
    """Customers with a purchase before the cutoff: point-in-time features, sequence features, future_spend."""

    buyers = pd.Index(lines.loc[lines["ts"] < cutoff, "customer_id"].unique(), dtype=str)
    feats = build.customer_features(settings, cutoff)
    feats = feats[feats["customer_id"].astype(str).isin(buyers)]
    frame = feats.merge(sequence_features(lines, cutoff), left_on="customer_id", right_index=True, how="left")
    target = future_spend(lines, cutoff, horizon_days)
    return frame.assign(**{TARGET: target.reindex(frame["customer_id"].astype(str)).fillna(0.0).to_numpy()})


def btyd_clv(
    settings: Settings, lines: pd.DataFrame, cutoff: pd.Timestamp, horizon_days: int, fit_ids: np.ndarray | None = None
) -> pd.DataFrame:
    """BG/NBD + Gamma-Gamma (lifetimes) per customer: expected purchases, order value and spend over the horizon."""
    cfg = settings.clv
    summary = btyd.rfm_summary(lines, cutoff, cfg.btyd_freq)
    fit_on = summary if fit_ids is None else summary.loc[summary.index.intersection(pd.Index(fit_ids, dtype=str))]
    bg, gg = btyd.fit_bgnbd(fit_on, cfg.btyd_penalizer), btyd.fit_gamma_gamma(fit_on, cfg.btyd_penalizer)
    periods = horizon_days / btyd.PERIOD_DAYS[cfg.btyd_freq]
    out = btyd.bgnbd_outputs(bg, summary, periods)[["bg_p_alive", "bg_expected_purchases"]]
    out["gg_order_value"] = np.asarray(
        gg.conditional_expected_average_profit(summary["frequency"], summary["monetary_value"].clip(lower=0)),
        dtype=float,
    )
    out["bg_gg_clv"] = btyd.expected_spend(bg, gg, summary, periods)
    return out


def fit_regressor(X: pd.DataFrame, y: np.ndarray, groups: pd.Series, settings: Settings) -> lgb.Booster:
    """LightGBM regressor: rounds chosen on an inner customer-disjoint split, then refitted on all of X."""
    cfg = settings.clv
    params = {**cfg.params, "seed": cfg.seed, "deterministic": True, "force_row_wise": True}
    fit_idx, val_idx = customer_folds(groups, (y > 0).astype(int), max(2, round(1 / cfg.inner_valid_share)), cfg.seed)[
        0
    ]
    dtrain = lgb.Dataset(X.iloc[fit_idx], y[fit_idx])
    probe = lgb.train(
        params,
        dtrain,
        cfg.num_boost_round,
        valid_sets=[lgb.Dataset(X.iloc[val_idx], y[val_idx], reference=dtrain)],
        callbacks=[lgb.early_stopping(cfg.early_stopping_rounds, verbose=False)],
    )
    return lgb.train(params, lgb.Dataset(X, y), max(1, int(probe.best_iteration * cfg.refit_rounds_factor)))


def cross_validated_clv(
    settings: Settings, frame: pd.DataFrame, lines: pd.DataFrame, cutoff: pd.Timestamp, horizon_days: int
) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold (Patron, BG/NBD + Gamma-Gamma) predictions; every model fitted on the fold's training customers."""
    y = frame[TARGET].to_numpy(float)
    ids = frame["customer_id"].astype(str)
    X_all = frame.drop(columns=["customer_id", TARGET]).set_index(ids)
    patron, classic = np.full(len(y), np.nan), np.full(len(y), np.nan)
    for train_idx, test_idx in customer_folds(ids, (y > 0).astype(int), settings.clv.folds, settings.clv.seed):
        bt = btyd_clv(settings, lines, cutoff, horizon_days, fit_ids=ids.iloc[train_idx].to_numpy())
        X = X_all.join(bt)
        booster = fit_regressor(X.iloc[train_idx], y[train_idx], ids.iloc[train_idx], settings)
        patron[test_idx] = np.clip(booster.predict(X.iloc[test_idx]), 0, None)
        classic[test_idx] = X["bg_gg_clv"].iloc[test_idx].to_numpy()
    return patron, classic


def evaluation_cutoff(settings: Settings, lines: pd.DataFrame, horizon_days: int) -> pd.Timestamp:
    """The latest cutoff whose horizon ends with the data."""

    cutoff = data_end(settings) - pd.Timedelta(days=horizon_days)
    if cutoff <= lines["ts"].min():
        raise ValueError(f"clv horizon {horizon_days} days: the data is too short for a cutoff with a full horizon")
    return cutoff


def train_clv(settings: Settings) -> tracking.TrainResult:
    """Evaluate by customer-disjoint CV at the latest full-horizon cutoff, refit on everyone, log and register."""
    horizon = settings.clv.horizon_days
    with tracking.patron_run(settings, MODEL, settings.clv) as run:
        lines = purchases(settings)
        cutoff = evaluation_cutoff(settings, lines, horizon)
        frame = clv_frame(settings, cutoff, horizon, lines)
        tracking.log_dataset_digest(frame, "clv_training_set", "training")
        patron, classic = cross_validated_clv(settings, frame, lines, cutoff, horizon)
        actual = frame[TARGET].to_numpy(float)
        metrics = {**clv_metrics(actual, patron), **{f"btyd_{k}": v for k, v in clv_metrics(actual, classic).items()}}
        mlflow.log_params({"cutoff": cutoff.date().isoformat(), "horizon_days": horizon})
        mlflow.log_metrics(metrics)
        ids = frame["customer_id"].astype(str)
        X = frame.drop(columns=["customer_id", TARGET]).set_index(ids).join(btyd_clv(settings, lines, cutoff, horizon))
        booster = fit_regressor(X, actual, ids, settings)
        fp = fingerprint(frame)
        mlflow.set_tag(tracking.FINGERPRINT_TAG, fp)
        info = mlflow.lightgbm.log_model(booster, name="model", pip_requirements=[f"lightgbm=={lgb.__version__}"])
        # Registered last, tags included: a run killed before this line leaves no version behind.
        version = registry.register_version(settings, MODEL, info.model_uri, fp, "mae", metrics["mae"])
        return tracking.TrainResult(MODEL, run.info.run_id, version, metrics)
