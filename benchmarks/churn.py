"""`patron bench churn`: Patron's churn model vs BG/NBD's P(no purchase) vs recency, on the same cutoff and label.

CDNOW: every customer at the end of a 39-week calibration period, label = no purchase in the 39-week holdout;
Patron is scored out of fold by customer-disjoint cross-validation (tuning and early stopping nested inside each
training fold), BG/NBD is fitted by lifetimes. Synthetic: the active customers at the test cutoff, Patron trained
on the training cutoffs and calibrated on the later validation cutoff, against the generator's oracle.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

from benchmarks.datasets import cdnow_cutoff, prepare_dataset
from benchmarks.report import BenchReport
from features.pit.purchase_sequence import purchases, sequence_features
from features.tables.store import fingerprint
from patron import progress
from patron.config import BenchConfig, Settings
from training.churn.calibration import calibrated, expected_calibration_error
from training.mlops.metrics import churn_metrics
from training.mlops.splits import customer_folds
from training.value import btyd

COLUMNS = ["roc_auc", "pr_auc", "brier", "ece", "lift_top_decile"]
RFM = ["days_since_last_purchase", "orders_total", "spend_total", "tenure_days"]


def btyd_features(
    lines: pd.DataFrame, cutoff: pd.Timestamp, horizon_days: int, cfg: BenchConfig, fit_ids: np.ndarray | None = None
) -> pd.DataFrame:
    """BG/NBD outputs per customer at the cutoff, the model fitted by lifetimes on fit_ids (default: everyone)."""
    summary = btyd.rfm_summary(lines, cutoff, cfg.btyd_freq)
    fit_on = summary if fit_ids is None else summary.loc[summary.index.intersection(pd.Index(fit_ids, dtype=str))]
    model = btyd.fit_bgnbd(fit_on, cfg.btyd_penalizer)
    return btyd.bgnbd_outputs(model, summary, horizon_days / btyd.PERIOD_DAYS[cfg.btyd_freq])


def fit_tuned(X: pd.DataFrame, y: np.ndarray, groups: pd.Series, cfg: BenchConfig) -> lgb.Booster:
    """Choose grid candidate and rounds on an inner customer-disjoint split, then refit on all of X."""
    inner = customer_folds(groups, y, max(2, round(1 / cfg.inner_valid_share)), cfg.seed)[0]
    fit_idx, val_idx = inner
    best = None
    for overrides in progress.bar(cfg.grid, desc="churn grid", unit="params", leave=False):
        params = {**cfg.params, **overrides, "seed": cfg.seed, "deterministic": True, "force_row_wise": True}
        dtrain = lgb.Dataset(X.iloc[fit_idx], y[fit_idx])
        dvalid = lgb.Dataset(X.iloc[val_idx], y[val_idx], reference=dtrain)
        booster = lgb.train(
            params,
            dtrain,
            cfg.num_boost_round,
            valid_sets=[dvalid],
            callbacks=[lgb.early_stopping(cfg.early_stopping_rounds, verbose=False)],
        )
        loss = booster.best_score["valid_0"]["binary_logloss"]
        if best is None or loss < best[0]:
            best = (loss, params, booster.best_iteration)
    _, params, rounds = best
    return lgb.train(params, lgb.Dataset(X, y), max(1, int(rounds * cfg.refit_rounds_factor)))


def cross_validated_churn(
    frame: pd.DataFrame,
    lines: pd.DataFrame,
    cutoff: pd.Timestamp,
    horizon_days: int,
    cfg: BenchConfig,
    with_btyd: bool = True,
) -> np.ndarray:
    """Out-of-fold churn probabilities; BG/NBD features and LightGBM fitted on each fold's training customers."""
    y = frame["churned"].to_numpy(int)
    X_all = frame.drop(columns=["customer_id", "churned"]).set_index(frame["customer_id"].astype(str))
    oof = np.full(len(frame), np.nan)
    for train_idx, test_idx in customer_folds(frame["customer_id"], y, cfg.folds, cfg.seed):
        X = X_all
        if with_btyd:
            X = X.join(btyd_features(lines, cutoff, horizon_days, cfg, fit_ids=X_all.index[train_idx].to_numpy()))
        booster = fit_tuned(X.iloc[train_idx], y[train_idx], frame["customer_id"].iloc[train_idx], cfg)
        oof[test_idx] = booster.predict(X.iloc[test_idx])
    return oof


def _row(model: str, y: np.ndarray, score: np.ndarray, probability: bool = True) -> dict:
    m = churn_metrics(y, score) if probability else churn_metrics(y, (score - score.min()) / np.ptp(score))
    row = {"model": model, **{k: m[k] for k in ("roc_auc", "pr_auc", "lift_top_decile")}}
    if probability:
        row.update(brier=m["brier"], ece=expected_calibration_error(y, score))
    return row


def cdnow_frame(settings: Settings, cutoff: pd.Timestamp, horizon_days: int, lines: pd.DataFrame) -> pd.DataFrame:
    """Every customer seen before the cutoff: point-in-time features, sequence features, churned (0/1)."""
    from features.pit import build

    feats = build.customer_features(settings, cutoff)
    everyone = settings.features.model_copy(update={"lookback_days": (cutoff - lines["ts"].min()).days + 1})
    labels = build.churn_labels(settings.model_copy(update={"features": everyone}), cutoff, horizon_days)
    frame = feats.merge(sequence_features(lines, cutoff), left_on="customer_id", right_index=True, how="left")
    frame = frame.merge(labels.loc[labels["active"], ["customer_id", "churned"]], on="customer_id")
    return frame.assign(churned=frame["churned"].astype(int))


def bench_cdnow(settings: Settings) -> BenchReport:
    """CDNOW protocol: 39-week calibration, 39-week holdout, every customer, customer-disjoint CV for Patron."""
    started = time.perf_counter()
    cfg = settings.bench
    lines = purchases(settings)
    cutoff = cdnow_cutoff(lines, cfg)
    horizon = cfg.cdnow_holdout_days
    frame = cdnow_frame(settings, cutoff, horizon, lines)
    y = frame["churned"].to_numpy(int)
    ids = frame["customer_id"].astype(str)
    patron = cross_validated_churn(frame, lines, cutoff, horizon, cfg)
    rfm = cross_validated_churn(frame[["customer_id", *RFM, "churned"]], lines, cutoff, horizon, cfg, with_btyd=False)
    bg = btyd_features(lines, cutoff, horizon, cfg).reindex(ids)["bg_p_no_purchase"].to_numpy()
    rows = [
        _row("Patron (LightGBM, point-in-time + BG/NBD features, 5-fold CV)", y, patron),
        _row("LightGBM on plain RFM (same folds)", y, rfm),
        _row("BG/NBD P(no purchase in holdout) (lifetimes)", y, bg),
        _row(
            "recency only (days since last purchase)",
            y,
            frame["days_since_last_purchase"].to_numpy(float),
            probability=False,
        ),
    ]
    return BenchReport(
        name="Churn benchmark",
        dataset="cdnow",
        protocol={
            "cutoff": cutoff.date().isoformat(),
            "holdout_days": horizon,
            "customers": len(y),
            "base_rate": round(float(y.mean()), 4),
            "folds": cfg.folds,
            "btyd_freq": cfg.btyd_freq,
        },
        columns=COLUMNS,
        rows=rows,
        fingerprint=fingerprint(frame),
        seeds={"bench": cfg.seed},
        seconds=time.perf_counter() - started,
        notes=[
            "label: no purchase in the holdout, over all customers (all first bought in Q1 1997)",
            "Patron: customer-disjoint stratified folds; grid and rounds chosen inside each training fold",
        ],
    )


def bench_synthetic(settings: Settings) -> BenchReport:
    """Synthetic protocol: Patron's production pipeline (calibrated on the validation cutoff) vs the oracle."""
    from features.pit import build
    from features.synthetic.oracle import oracle_for
    from training.churn.train import calibrate, fit_booster, split_xy

    started = time.perf_counter()
    cfg, churn = settings.bench, settings.churn
    plan = build.cutoff_plan(settings)
    horizon = settings.features.horizon_days
    train, valid = build.training_set(settings, plan.train), build.training_set(settings, [plan.valid])
    test = build.training_set(settings, [plan.test])
    booster = fit_booster(train, valid, churn)
    method, calibrator, _ = calibrate(booster, valid, churn)
    X, y_s = split_xy(test)
    y = y_s.to_numpy(int)
    raw = np.asarray(booster.predict(X))
    ids = test["customer_id"].astype(str)
    bg = btyd_features(purchases(settings), plan.test, horizon, cfg).reindex(ids)["bg_p_no_purchase"].to_numpy()
    oracle_p = oracle_for(settings, plan.test.date(), ids)
    rows = [
        _row(f"Patron (LightGBM, calibrated: {method})", y, calibrated(calibrator, raw)),
        _row("Patron, before calibration", y, raw),
        _row("BG/NBD P(no purchase in horizon) (lifetimes)", y, bg),
        _row(
            "recency only (days since last purchase)",
            y,
            X["days_since_last_purchase"].to_numpy(float),
            probability=False,
        ),
        _row("oracle (true latent state, Monte-Carlo)", y, oracle_p),
    ]
    gap = rows[-1]["roc_auc"] - rows[0]["roc_auc"]
    return BenchReport(
        name="Churn benchmark",
        dataset="synthetic",
        protocol={
            "train_cutoffs": ",".join(c.date().isoformat() for c in plan.train),
            "calibration_cutoff": plan.valid.date().isoformat(),
            "test_cutoff": plan.test.date().isoformat(),
            "horizon_days": horizon,
            "customers": len(y),
            "base_rate": round(float(y.mean()), 4),
        },
        columns=COLUMNS,
        rows=rows,
        fingerprint=fingerprint(test),
        seeds={"synth": settings.seed, "churn": churn.seed, "bench": cfg.seed},
        seconds=time.perf_counter() - started,
        notes=[
            f"oracle ROC-AUC minus Patron's: {gap:.4f} (target: at most 0.02)",
            "test set: the customers active at the test cutoff; label: no purchase in the horizon",
        ],
    )


def run_churn_bench(
    settings: Settings, dataset: str, echo: Callable[[str], None] = print
) -> tuple[BenchReport, list[Path]]:
    """Prepare the dataset's bench workspace, run its protocol, write churn_bench.md/.json there and log them as an
    MLflow run of that workspace."""
    bench = prepare_dataset(settings, dataset, echo)
    report = bench_cdnow(bench) if dataset == "cdnow" else bench_synthetic(bench)
    return report, report.write(bench.workspace, "churn_bench", bench)
