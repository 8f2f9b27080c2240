"""Churn probability calibration: ECE, method choice, the later-cutoff fit in train_churn and the serving hook."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest

from training.churn.calibration import apply_calibrator, choose_calibrator, expected_calibration_error, fit_calibrator


def _miscalibrated(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from true probabilities q, and a score q**3 that ranks right but is far too low."""
    rng = np.random.default_rng(seed)
    q = rng.uniform(0, 1, n)
    return (rng.uniform(0, 1, n) < q).astype(int), q**3


def test_ece_on_a_hand_computed_example() -> None:
    # bins of width 0.1: 0.1 -> bin 1 (observed 0, predicted 0.2 in sum), 0.9 -> bin 9 (observed 2, predicted 1.8)
    assert expected_calibration_error(np.array([0, 0, 1, 1]), np.array([0.1, 0.1, 0.9, 0.9])) == pytest.approx(0.1)
    assert expected_calibration_error(np.array([0, 1]), np.array([0.0, 1.0])) == 0.0
    with pytest.raises(ValueError):
        expected_calibration_error(np.array([]), np.array([]))


@pytest.mark.parametrize("method", ["isotonic", "platt"])
def test_calibration_reduces_ece_on_fresh_data(method: str) -> None:
    y_fit, p_fit = _miscalibrated(4000, seed=1)
    y_new, p_new = _miscalibrated(4000, seed=2)
    before = expected_calibration_error(y_new, p_new)
    after = expected_calibration_error(y_new, apply_calibrator(fit_calibrator(method, y_fit, p_fit), p_new))
    assert before > 0.15
    assert after < 0.05 and after < before / 4


def test_choose_calibrator_reports_both_methods_and_keeps_the_ranking() -> None:
    y, p = _miscalibrated(3000, seed=3)
    method, calibrator, scores = choose_calibrator(y, p, seed=0)
    assert set(scores) == {"isotonic", "platt"} and method == min(scores, key=scores.get)
    out = apply_calibrator(calibrator, np.sort(p))
    assert np.all(np.diff(out) >= -1e-12) and out.min() >= 0 and out.max() <= 1
    with pytest.raises(ValueError, match="single class"):
        choose_calibrator(np.zeros(10, int), np.linspace(0, 1, 10), seed=0)
    with pytest.raises(ValueError, match="calibration method"):
        fit_calibrator("beta", y, p)


def test_train_churn_calibrates_on_the_validation_cutoff_and_serving_applies_it(trained_workspace) -> None:
    from features.pit import build
    from serving.answers.churn_scoring import score_frame
    from serving.champions.load import load_churn_champion
    from training.churn.model import ChurnModel
    from training.churn.train import split_xy

    settings = trained_workspace.settings
    scorer, version = load_churn_champion(settings)
    assert isinstance(scorer, ChurnModel) and scorer.calibrator is not None
    client = mlflow.MlflowClient(settings.tracking_uri)
    run = client.get_run(client.get_model_version(settings.tracking.churn_model, version).run_id)
    params, metrics = run.data.params, run.data.metrics
    assert params["calibration_method"] in {"isotonic", "platt"}
    assert params["valid_cutoff"] > max(params["train_cutoffs"].split(","))
    assert 0.0 <= metrics["ece"] <= 1.0 and "ece_raw" in metrics

    # The logged calibrator is the one fitted on the validation (later) cutoff, not on the training cutoffs.
    plan = build.cutoff_plan(settings)
    X_valid, y_valid = split_xy(build.training_set(settings, [plan.valid]))
    raw_valid = scorer.booster.predict(X_valid)
    refit = fit_calibrator(params["calibration_method"], y_valid.to_numpy(), raw_valid)
    grid = np.linspace(0.0, 1.0, 101)
    np.testing.assert_allclose(apply_calibrator(scorer.calibrator, grid), apply_calibrator(refit, grid), atol=1e-6)
    X_train, y_train = split_xy(build.training_set(settings, plan.train))
    on_train = fit_calibrator(params["calibration_method"], y_train.to_numpy(), scorer.booster.predict(X_train))
    assert np.abs(apply_calibrator(on_train, grid) - apply_calibrator(scorer.calibrator, grid)).max() > 1e-3

    # Serving: probabilities calibrated, contributions the booster's own, tiers consistent with the probabilities.
    features = build.customer_features(settings, plan.test).head(50)
    X = features[scorer.feature_name()]
    np.testing.assert_allclose(scorer.predict(X), apply_calibrator(scorer.calibrator, scorer.booster.predict(X)))
    np.testing.assert_allclose(scorer.predict(X, pred_contrib=True), scorer.booster.predict(X, pred_contrib=True))
    scored = score_frame(scorer, features, settings.churn)
    np.testing.assert_allclose(scored["churn_probability"], scorer.predict(X))
    assert list(scored["risk_tier"]) == [settings.churn.tier(p) for p in scored["churn_probability"]]
