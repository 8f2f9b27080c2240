"""Calibration of churn probabilities (isotonic or Platt, chosen by validation) and the expected calibration error."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import logit
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

METHODS = ("isotonic", "platt")
_EPS = 1e-6


def expected_calibration_error(y_true: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """ECE: the count-weighted mean |observed rate - mean probability| over equal-width probability bins."""
    y, p = np.asarray(y_true, dtype=float), np.asarray(p, dtype=float)
    if len(y) == 0:
        raise ValueError("expected_calibration_error: no predictions")
    which = np.minimum((p * bins).astype(int), bins - 1)
    count = np.bincount(which, minlength=bins)
    gap = np.abs(np.bincount(which, y, bins) - np.bincount(which, p, bins))  # per bin: |sum y - sum p|
    return float(gap.sum() / count.sum())


def _clipped_logit(p: np.ndarray) -> np.ndarray:
    return logit(np.clip(np.asarray(p, dtype=float), _EPS, 1 - _EPS)).reshape(-1, 1)


def make_calibrator(method: str) -> Any:
    """An unfitted scikit-learn calibrator of raw probabilities: isotonic, or Platt (logistic on the logit)."""
    if method == "isotonic":
        return IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
    if method == "platt":
        return make_pipeline(FunctionTransformer(_clipped_logit), LogisticRegression(C=1e6))
    raise ValueError(f"calibration method {method!r}: choose one of {', '.join(METHODS)}")


def fit_calibrator(method: str, y_true: np.ndarray, p: np.ndarray) -> Any:
    """Fit a calibrator of `method` mapping raw probabilities p to observed churn y."""
    model = make_calibrator(method)
    y, p = np.asarray(y_true, dtype=int), np.asarray(p, dtype=float)
    return model.fit(p, y) if method == "isotonic" else model.fit(p.reshape(-1, 1), y)


def apply_calibrator(calibrator: Any, p: np.ndarray) -> np.ndarray:
    """Calibrated probabilities from raw ones (either kind of fitted calibrator)."""
    p = np.asarray(p, dtype=float)
    if isinstance(calibrator, IsotonicRegression):
        return np.asarray(calibrator.predict(p), dtype=float)
    return np.asarray(calibrator.predict_proba(p.reshape(-1, 1))[:, 1], dtype=float)


def calibrated(calibrator: Any, p: np.ndarray) -> np.ndarray:
    """Probabilities through a fitted calibrator (unchanged when there is none)."""
    return np.asarray(p, dtype=float) if calibrator is None else apply_calibrator(calibrator, p)


def choose_calibrator(
    y_true: np.ndarray, p: np.ndarray, seed: int, folds: int = 3, methods: tuple[str, ...] = METHODS
) -> tuple[str, Any, dict[str, float]]:
    """Pick the method with the lowest cross-validated Brier score on (y, p), refit it on all; returns the scores."""
    y, p = np.asarray(y_true, dtype=int), np.asarray(p, dtype=float)
    if y.min() == y.max():
        raise ValueError("calibration labels hold a single class; cannot calibrate")
    splits = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(p.reshape(-1, 1), y))
    scores = {}
    for method in methods:
        out = np.empty(len(p))
        for fit_idx, eval_idx in splits:
            out[eval_idx] = apply_calibrator(fit_calibrator(method, y[fit_idx], p[fit_idx]), p[eval_idx])
        scores[method] = float(brier_score_loss(y, out))
    best = min(scores, key=scores.get)
    return best, fit_calibrator(best, y, p), scores
