"""LightGBM churn model: time-based train / validation / test cutoffs, evaluation, MLflow logging."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightgbm as lgb
import mlflow
import numpy as np
import pandas as pd

from features.pit import build
from features.tables.store import fingerprint
from patron.config import ChurnConfig, Settings
from training.churn.calibration import choose_calibrator, expected_calibration_error
from training.churn.model import ChurnModel, categorical_columns
from training.mlops import plots, registry, tracking
from training.mlops.drift import REFERENCE_ARTIFACT
from training.mlops.metrics import churn_metrics
from training.mlops.monitor import training_profile

MODEL = "churn"
ID_COLUMNS = ["customer_id", "cutoff"]
LABEL = "churned"


def split_xy(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """Features (categoricals kept as pandas category) and the churn label of a training-set frame."""
    missing = set(ID_COLUMNS + [LABEL]) - set(frame.columns)
    if missing:
        raise ValueError(f"training set: missing column(s) {sorted(missing)}")
    return frame.drop(columns=ID_COLUMNS + [LABEL]), frame[LABEL].astype(int)


def booster_params(config: ChurnConfig) -> dict:
    """LightGBM parameters from the config, made deterministic with the configured seed."""
    params = dict(config.params)
    params.setdefault("num_threads", 2)
    params.update(seed=config.seed, deterministic=True, force_row_wise=True)
    return params


def fit_booster(
    train: pd.DataFrame, valid: pd.DataFrame, config: ChurnConfig, callbacks: list[Callable] | None = None
) -> lgb.Booster:
    """Fit on the training cutoffs, early-stopped on the validation cutoff (extra LightGBM callbacks optional)."""
    X, y = split_xy(train)
    Xv, yv = split_xy(valid)
    dtrain = lgb.Dataset(X, y, categorical_feature="auto", free_raw_data=False)
    dvalid = lgb.Dataset(Xv, yv, reference=dtrain)
    return lgb.train(
        booster_params(config),
        dtrain,
        num_boost_round=config.num_boost_round,
        valid_sets=[dvalid],
        valid_names=["valid"],
        callbacks=[lgb.early_stopping(config.early_stopping_rounds, verbose=False), *(callbacks or [])],
    )


def calibrate(booster: lgb.Booster, later: pd.DataFrame, config: ChurnConfig) -> tuple[str, Any, dict[str, float]]:
    """Calibrator of the booster's probabilities fitted on a later cutoff's set: (method, calibrator, CV Brier scores).

    `config.calibration` "auto" picks isotonic or Platt by cross-validated Brier score; "none" returns no calibrator.
    """
    if config.calibration == "none":
        return "none", None, {}
    X, y = split_xy(later)
    methods = ("isotonic", "platt") if config.calibration == "auto" else (config.calibration,)
    return choose_calibrator(
        y.to_numpy(), np.asarray(booster.predict(X)), config.seed, config.calibration_folds, methods
    )


def synthetic_example(X: pd.DataFrame, rows: int = 2) -> pd.DataFrame:
    """An input example made of column medians and category levels: the schema, never a customer's row."""
    out = {}
    for col in X.columns:
        if isinstance(X[col].dtype, pd.CategoricalDtype):
            levels = list(X[col].cat.categories)
            out[col] = pd.Categorical([levels[i % len(levels)] for i in range(rows)], categories=levels)
        else:
            med = X[col].median()
            out[col] = np.full(rows, 0.0 if pd.isna(med) else float(med))
    return pd.DataFrame(out)


def _log_plots(y: np.ndarray, p: np.ndarray) -> None:
    for name, fig in {
        "roc": plots.roc_figure(y, p),
        "precision_recall": plots.pr_figure(y, p),
        "calibration": plots.calibration_figure(y, p),
        "gain": plots.gain_figure(y, p),
    }.items():
        mlflow.log_figure(fig, f"plots/{name}.png")


def train_churn(settings: Settings) -> tracking.TrainResult:
    """Train on the stacked training cutoffs, early-stop on the validation cutoff, evaluate on the test cutoff."""
    cfg = settings.churn
    plan = build.cutoff_plan(settings)
    with tracking.patron_run(settings, MODEL, cfg) as run:
        train = build.training_set(settings, plan.train)
        valid = build.training_set(settings, [plan.valid])
        test = build.training_set(settings, [plan.test])
        mlflow.log_params(
            {
                "train_cutoffs": ",".join(c.date().isoformat() for c in plan.train),
                "valid_cutoff": plan.valid.date().isoformat(),
                "test_cutoff": plan.test.date().isoformat(),
                "horizon_days": settings.features.horizon_days,
                "lookback_days": settings.features.lookback_days,
            }
        )
        for frame, name in ((train, "training"), (valid, "validation"), (test, "test")):
            tracking.log_dataset_digest(frame, f"churn_{name}_set", name)
        booster = fit_booster(train, valid, cfg)
        method, calibrator, cal_scores = calibrate(booster, valid, cfg)  # the validation cutoff: after training's
        X_train, _ = split_xy(train)
        model = ChurnModel(booster, calibrator, categorical_columns(X_train))
        X_test, y_test = split_xy(test)
        p = model.raw_proba(X_test)
        p_cal = model.predict_proba(X_test)
        # roc_auc & co. stay the booster's own (what promotion re-evaluates); calibrated figures are added beside.
        metrics = {
            **churn_metrics(y_test, p),
            "best_iteration": float(booster.best_iteration),
            **{f"valid_{k}": float(v) for k, v in booster.best_score["valid"].items()},
            "ece_raw": expected_calibration_error(y_test, p, cfg.ece_bins),
            "ece": expected_calibration_error(y_test, p_cal, cfg.ece_bins),
            "brier_calibrated": churn_metrics(y_test, p_cal)["brier"],
            **{f"calibration_cv_brier_{k}": v for k, v in cal_scores.items()},
        }
        mlflow.log_param("calibration_method", method)
        mlflow.log_metrics(metrics)
        _log_plots(y_test.to_numpy(), p_cal)
        # Aggregates only (bin edges and shares): what `patron monitor` compares live data against.
        mlflow.log_dict(
            training_profile(settings, train, model.feature_name(), model.predict_proba(X_train)), REFERENCE_ARTIFACT
        )
        test_fp = fingerprint(test)
        mlflow.set_tag(tracking.FINGERPRINT_TAG, test_fp)
        model_uri = model.log(synthetic_example(X_test))  # one pyfunc: booster, calibrator and feature schema
        tracking.fault_pause("model_logged")
        # Registered last, tags included: a run killed before this line leaves no version behind.
        version = registry.register_version(settings, MODEL, model_uri, test_fp, "roc_auc", metrics["roc_auc"])
        return tracking.TrainResult(MODEL, run.info.run_id, version, metrics)
