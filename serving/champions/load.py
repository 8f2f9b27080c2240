"""The champion models from the MLflow registry: the recommender and the churn model, with their versions."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import lightgbm as lgb
import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from patron.config import Settings
from serving.champions.local_copy import find_copy, registry_unreachable, save_copy
from training.churn.model import ChurnModel
from training.mlops.registry import registered_name
from training.recommend.artifacts import load_recommender
from training.recommend.base import Recommender

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # no network at run time
logger = logging.getLogger("bentoml.patron")
REGISTRY_SOURCE = "registry"


@dataclass(frozen=True)
class Champions:
    """Both champion models and the registry versions they came from."""

    recommender: Recommender
    recommender_version: str
    churn: ChurnModel
    churn_version: str
    recommender_source: str = REGISTRY_SOURCE  # or the local copy it came from, and why
    churn_source: str = REGISTRY_SOURCE


def champion_version(client: MlflowClient, model_name: str, alias: str) -> str:
    """Registry version behind `model_name@alias` (raises mlflow's MlflowException when there is none)."""
    return str(client.get_model_version_by_alias(model_name, alias).version)


def registry_client(settings: Settings) -> MlflowClient:
    """An MLflow client on the workspace's tracking store and registry."""
    # Both URIs explicitly: models:/ URIs resolve against the registry URI, which may come from the environment.
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)


def load_churn_champion(settings: Settings) -> tuple[ChurnModel, str]:
    """The churn champion (booster and calibrator in one ChurnModel) and its registry version (alias resolved once)."""
    t = settings.tracking
    version = champion_version(registry_client(settings), t.churn_model, t.champion_alias)
    return ChurnModel.from_registry(settings, version), version


def champion_artifacts(settings: Settings, model: str, version: str) -> dict[str, str]:
    """Artifact URIs of a champion version: its logged "model" (the churn model's calibrator is inside it)."""
    name = registered_name(settings, model)
    return {"model": registry_client(settings).get_model_version_download_uri(name, version)}


def keep_local_copy(settings: Settings, model: str, version: str) -> None:
    """Save a champion just loaded from the registry as the workspace's last good copy (failures only logged)."""
    try:
        save_copy(settings, model, version, champion_artifacts(settings, model, version))
    except Exception as exc:  # noqa: BLE001 - the model serves from the registry; only the fallback is stale
        logger.warning("could not keep a local copy of %s v%s: %s: %s", model, version, type(exc).__name__, exc)


def load_from_copy(settings: Settings, reason: BaseException) -> Champions:
    """Both champions from their last good local copies, saying why the registry was not used."""
    rec_version, rec, rec_saved = find_copy(settings, "recommender")
    churn_version, churn, churn_saved = find_copy(settings, "churn")
    why = f"registry unreachable: {type(reason).__name__}: {str(reason).splitlines()[0][:200]}"
    return Champions(
        recommender=recommender_from_model(rec["model"]),
        recommender_version=rec_version,
        churn=ChurnModel.from_logged(churn["model"]),
        churn_version=churn_version,
        recommender_source=f"local copy saved {rec_saved} ({why})",
        churn_source=f"local copy saved {churn_saved} ({why})",
    )


def champion_or_latest(settings: Settings, name: str, train_command: str) -> str:
    """The version a model's champion alias names, else its latest version (LookupError when none is registered)."""
    client = registry_client(settings)
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


def recommender_from_model(model_dir: Path) -> Recommender:
    """The recommender in a logged model's folder, read from its artifacts (no pyfunc): the ALS
    `training.recommend.als.ALSRecommender`, or the `TwoStageRecommender` when the champion is a two-stage pipeline."""
    return load_recommender(Path(model_dir) / "artifacts")


def load_recommender_champion(settings: Settings) -> tuple[Recommender, str]:
    """The champion recommender (whatever pipeline it is) and its registry version."""
    t = settings.tracking
    version = champion_version(registry_client(settings), t.recommender_model, t.champion_alias)
    with TemporaryDirectory() as tmp:
        folder = mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{t.recommender_model}/{version}", dst_path=tmp, tracking_uri=settings.tracking_uri
        )
        return recommender_from_model(Path(folder)), version


def load_uplift_champion(settings: Settings) -> tuple[Any, str]:
    """The `training.value.uplift.UpliftModel` (offer effects on churn): champion, else latest; and its version."""
    name = settings.tracking.uplift_model
    version = champion_or_latest(settings, name, "patron train uplift")
    model = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    return model.unwrap_python_model().model, version


def load_champions(settings: Settings) -> Champions:
    """Load both champions from the registry and keep a local copy; from that copy when the registry is unreachable."""
    try:
        recommender, rec_version = load_recommender_champion(settings)
        booster, churn_version = load_churn_champion(settings)
    except Exception as exc:
        if not registry_unreachable(exc):
            raise
        try:
            champions = load_from_copy(settings, exc)
        except FileNotFoundError:
            raise exc from None
        logger.warning(
            "registry unreachable, serving the last good local copies: recommender v%s, churn v%s (%s)",
            champions.recommender_version,
            champions.churn_version,
            champions.churn_source,
        )
        return champions
    keep_local_copy(settings, "recommender", rec_version)
    keep_local_copy(settings, "churn", churn_version)
    return Champions(
        recommender=recommender, recommender_version=rec_version, churn=booster, churn_version=churn_version
    )
