"""The ChurnModel (training/churn/model.py): one object for booster, calibrator and features, logged as one pyfunc."""

from __future__ import annotations

import shutil

import mlflow
import numpy as np
import pandas as pd
import pytest

from features.pit import build
from patron.config import Settings
from tests.conftest import Workspace, small_workspace
from training.churn.calibration import apply_calibrator
from training.churn.model import ChurnModel, categorical_columns
from training.churn.train import calibrate, fit_booster, split_xy, synthetic_example
from training.mlops import registry, tracking


@pytest.fixture(scope="module")
def registered(ingested_workspace: Workspace, tmp_path_factory) -> tuple[Settings, ChurnModel]:
    """The session's tables in a workspace of its own, a ChurnModel fitted in process, logged, registered and
    aliased champion there."""
    ws = small_workspace(tmp_path_factory.mktemp("churn_model"))
    shutil.copytree(ingested_workspace.settings.tables_dir, ws.settings.tables_dir)
    settings = ws.settings
    plan = build.cutoff_plan(settings)
    train, valid = build.training_set(settings, plan.train), build.training_set(settings, [plan.valid])
    booster = fit_booster(train, valid, settings.churn)
    _, calibrator, _ = calibrate(booster, valid, settings.churn)
    X, _ = split_xy(train)
    model = ChurnModel(booster, calibrator, categorical_columns(X))
    client = tracking.configure(settings)
    with mlflow.start_run():
        uri = model.log(synthetic_example(X))
    version = registry.register_version(settings, "churn", uri, "fingerprint", "roc_auc", 0.5)
    client.set_registered_model_alias(settings.tracking.churn_model, settings.tracking.champion_alias, str(version))
    return settings, model


def test_the_pyfunc_loaded_from_the_champion_alias_scores_as_the_model_in_process(registered) -> None:
    settings, model = registered
    assert model.calibrator is not None and model.categorical  # the synthetic retailer has categorical features
    tracking.configure(settings)
    pyfunc = mlflow.pyfunc.load_model(f"models:/{settings.tracking.churn_model}@{settings.tracking.champion_alias}")
    build.customer_features(settings, build.cutoff_plan(settings).test)  # cached as the README's parquet file
    path = sorted(settings.features_dir.glob("customer_features_*.parquet"))[-1]
    features = pd.read_parquet(path)
    p = np.asarray(pyfunc.predict(features))
    np.testing.assert_allclose(p, model.predict_proba(features))
    raw = model.booster.predict(features[model.feature_name()])
    np.testing.assert_allclose(p, apply_calibrator(model.calibrator, raw))
    assert np.abs(p - raw).max() > 1e-3  # the calibrator changes them: the pyfunc does not serve the raw booster
    np.testing.assert_allclose(pyfunc.predict(features, params={"output": "raw"}), raw)
    # categoricals arriving as plain strings (a JSON request) score the same
    as_text = features.astype({c: object for c in model.categorical})
    np.testing.assert_allclose(pyfunc.predict(as_text), p)
    with pytest.raises(ValueError, match="output"):
        pyfunc.predict(features, params={"output": "logits"})


def test_registry_run_and_folder_loads_give_the_same_model(registered, tmp_path) -> None:
    settings, model = registered
    features = build.customer_features(settings, build.cutoff_plan(settings).test)
    expected = model.predict_proba(features)
    version = tracking.configure(settings).get_model_version_by_alias(
        settings.tracking.churn_model, settings.tracking.champion_alias
    )
    for loaded in (
        ChurnModel.from_registry(settings, "@" + settings.tracking.champion_alias),
        ChurnModel.from_registry(settings, str(version.version)),
        ChurnModel.from_run(settings, version.run_id),
        ChurnModel.load(model.save(tmp_path / "saved")),
    ):
        assert loaded.feature_name() == model.feature_name() and loaded.categorical == model.categorical
        np.testing.assert_array_equal(loaded.predict_proba(features), expected)
    # the encoded matrix (the service's path) scores exactly as the frame
    np.testing.assert_array_equal(model.predict(model.matrix(features)), expected)


def test_a_model_without_its_categorical_columns_is_refused(registered) -> None:
    _, model = registered
    with pytest.raises(ValueError, match="categorical"):
        ChurnModel(model.booster, model.calibrator, [])
