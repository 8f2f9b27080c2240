"""`patron promote clv|uplift`: guarded like churn, in each metric's own direction, incomplete versions refused."""

from __future__ import annotations

import lightgbm as lgb
import mlflow
import mlflow.lightgbm
import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from patron.cli.main import app
from patron.config import DEFAULT_CONFIG
from tests.test_training_fixtures import tiny_settings
from training.mlops import registry, tracking
from training.mlops.registry import PromotionRefused, promote


@pytest.fixture(scope="module")
def model_uri(tmp_path_factory: pytest.TempPathFactory):
    """Settings on a private MLflow store and the URI of one small logged (unregistered) booster."""
    store = tmp_path_factory.mktemp("promote_value")
    settings = tiny_settings(store, store)
    tracking.configure(settings)
    rng = np.random.default_rng(0)
    booster = lgb.train(
        {"objective": "regression", "verbose": -1, "num_threads": 1},
        lgb.Dataset(rng.normal(size=(50, 2)), rng.normal(size=50)),
        2,
    )
    mlflow.set_experiment("promote-value-test")
    with mlflow.start_run():
        uri = mlflow.lightgbm.log_model(booster, name="model").model_uri
    return settings, uri


def _champion(settings, name: str) -> int:
    return int(MlflowClient(settings.tracking_uri).get_model_version_by_alias(name, "champion").version)


def test_clv_promotion_needs_a_lower_mae_on_the_same_data(model_uri) -> None:
    settings, uri = model_uri
    name = settings.tracking.clv_model
    first = registry.register_version(settings, "clv", uri, "fp-a", "mae", 10.0)
    assert promote(settings, "clv").version == first
    worse = registry.register_version(settings, "clv", uri, "fp-a", "mae", 12.0)
    with pytest.raises(PromotionRefused, match="does not beat") as refused:
        promote(settings, "clv")
    assert f"v{worse}" in str(refused.value) and "12.0000" in str(refused.value)
    assert _champion(settings, name) == first
    better = registry.register_version(settings, "clv", uri, "fp-a", "mae", 8.0)
    result = promote(settings, "clv")
    assert (result.version, result.previous) == (better, first) and _champion(settings, name) == better
    other_data = registry.register_version(settings, "clv", uri, "fp-b", "mae", 1.0)
    with pytest.raises(PromotionRefused, match="different data"):
        promote(settings, "clv", version=other_data)
    assert promote(settings, "clv", version=other_data, force=True).forced


def test_uplift_promotion_needs_a_higher_qini_and_refuses_untagged_versions(model_uri) -> None:
    settings, uri = model_uri
    name = settings.tracking.uplift_model
    first = registry.register_version(settings, "uplift", uri, "fp-u", "qini_best_offer", 0.05)
    promote(settings, "uplift")
    registry.register_version(settings, "uplift", uri, "fp-u", "qini_best_offer", 0.01)
    with pytest.raises(PromotionRefused, match="does not beat"):
        promote(settings, "uplift")
    untagged = int(mlflow.register_model(uri, name).version)  # what a run killed mid-registration would leave
    with pytest.raises(PromotionRefused, match="lacks the evaluation tags"):
        promote(settings, "uplift", version=untagged, force=True)
    assert _champion(settings, name) == first
    better = registry.register_version(settings, "uplift", uri, "fp-u", "qini_best_offer", 0.09)
    assert promote(settings, "uplift").version == better


def test_promote_cli_accepts_clv_and_uplift(model_uri, tmp_path) -> None:
    settings, uri = model_uri
    config = tmp_path / "config.yaml"
    config.write_text(
        f"extends: {DEFAULT_CONFIG}\nworkspace: {settings.workspace}\ntracking:\n  uri: {settings.tracking.uri}\n"
        f"  artifact_location: {settings.tracking.artifact_location}\n"
    )
    version = registry.register_version(settings, "clv", uri, "fp-cli", "mae", 0.5)
    result = CliRunner().invoke(app, ["--config", str(config), "promote", "clv", "--version", str(version), "--force"])
    assert result.exit_code == 0, result.output
    assert f"v{version}" in result.output and _champion(settings, settings.tracking.clv_model) == version
    refused = CliRunner().invoke(app, ["--config", str(config), "promote", "uplift", "--version", "999"])
    assert refused.exit_code == 1
    assert "promotion refused" in refused.output and "patron-uplift" in refused.output
