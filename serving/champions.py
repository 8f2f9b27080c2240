"""The champion models from the MLflow registry: the recommender and the churn booster, with their versions."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import mlflow
import mlflow.sklearn
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from patron.config import Settings
from serving.churn_scoring import CalibratedBooster

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # no network at run time


@dataclass(frozen=True)
class Champions:
    """Both champion models and the registry versions they came from."""

    recommender: Any
    recommender_version: str
    churn: lgb.Booster | CalibratedBooster
    churn_version: str


def champion_version(client: MlflowClient, model_name: str, alias: str) -> str:
    """Registry version behind `model_name@alias` (raises mlflow's MlflowException when there is none)."""
    return str(client.get_model_version_by_alias(model_name, alias).version)


def _client(settings: Settings) -> MlflowClient:
    # Both URIs explicitly: models:/ URIs resolve against the registry URI, which may come from the environment.
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)


def load_churn_calibrator(client: MlflowClient, model_name: str, version: str) -> Any | None:
    """The calibrator logged in the same run as a churn version (None for versions trained without one)."""
    from training.churn import CALIBRATOR_ARTIFACT

    run_id = client.get_model_version(model_name, version).run_id
    try:
        return mlflow.sklearn.load_model(f"runs:/{run_id}/{CALIBRATOR_ARTIFACT}")
    except (MlflowException, OSError):
        return None


def load_churn_champion(settings: Settings) -> tuple[lgb.Booster | CalibratedBooster, str]:
    """The churn champion (with its calibrator when it has one) and its registry version (alias resolved once)."""
    t = settings.tracking
    client = _client(settings)
    version = champion_version(client, t.churn_model, t.champion_alias)
    booster = mlflow.lightgbm.load_model(f"models:/{t.churn_model}/{version}")
    calibrator = load_churn_calibrator(client, t.churn_model, version)
    return (booster if calibrator is None else CalibratedBooster(booster, calibrator)), version


def champion_or_latest(settings: Settings, name: str, train_command: str) -> str:
    """The version a model's champion alias names, else its latest version (LookupError when none is registered)."""
    client = _client(settings)
    try:
        return champion_version(client, name, settings.tracking.champion_alias)
    except MlflowException:
        versions = client.search_model_versions(f"name='{name}'")
        if not versions:
            raise LookupError(f"no {name} model registered: run `{train_command}`") from None
        return str(max(int(v.version) for v in versions))


def load_clv_champion(settings: Settings) -> tuple[lgb.Booster, str]:
    """The CLV booster registered by `patron train clv`: its champion when one is aliased, else the latest version."""
    name = settings.tracking.clv_model
    version = champion_or_latest(settings, name, "patron train clv")
    return mlflow.lightgbm.load_model(f"models:/{name}/{version}"), version


def load_recommender_champion(settings: Settings) -> tuple[Any, str]:
    """The champion `training.recommender.Recommender` and its registry version."""
    t = settings.tracking
    version = champion_version(_client(settings), t.recommender_model, t.champion_alias)
    model = mlflow.pyfunc.load_model(f"models:/{t.recommender_model}/{version}")
    return model.unwrap_python_model().recommender, version


def load_uplift_champion(settings: Settings) -> tuple[Any, str]:
    """The `training.uplift.UpliftModel` (offer effects on churn): its champion, else the latest; and its version."""
    name = settings.tracking.uplift_model
    version = champion_or_latest(settings, name, "patron train uplift")
    model = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    return model.unwrap_python_model().model, version


def load_champions(settings: Settings) -> Champions:
    """Load both champions from the registry."""
    recommender, rec_version = load_recommender_champion(settings)
    booster, churn_version = load_churn_champion(settings)
    return Champions(recommender=recommender, recommender_version=rec_version,
                     churn=booster, churn_version=churn_version)
