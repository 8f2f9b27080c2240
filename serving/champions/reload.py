"""Hot model reload: poll the champion aliases, load a moved champion in the background, smoke-check, swap."""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from mlflow import MlflowClient

from patron.config import Settings
from serving.champions.load import (
    REGISTRY_SOURCE,
    Champions,
    champion_version,
    keep_local_copy,
    load_churn_champion,
    load_recommender_champion,
)
from training.churn.model import ChurnModel
from training.recommend.base import Recommender

logger = logging.getLogger("bentoml.patron")


@dataclasses.dataclass
class ReloadStatus:
    """What one model's watcher last saw and did."""

    model: str
    registry_version: str | None = None
    last_error: str | None = None
    last_checked: str | None = None


def smoke_recommender(recommender: Recommender) -> None:
    """A recommender must name items and answer one customer."""
    if not recommender.popular(1):
        raise ValueError("the recommender returns no popular item")
    if len(recommender.customer_ids) and not recommender.recommend(str(recommender.customer_ids[0]), 1):
        raise ValueError("the recommender returns nothing for a known customer")


def smoke_churn(model: ChurnModel, current: ChurnModel | None) -> None:
    """A churn model must take the same features as the one serving."""
    if current is not None and model.feature_name() != current.feature_name():
        raise ValueError(
            f"the new churn model expects features {model.feature_name()[:5]}..., "
            f"the serving one {current.feature_name()[:5]}..."
        )


class ChampionWatcher:
    """Background thread that keeps `get()`'s champions equal to the registry aliases, never worse."""

    def __init__(
        self, settings: Settings, get: Callable[[], Champions | None], swap: Callable[[Champions], None]
    ) -> None:
        self.settings = settings
        self._get, self._swap = get, swap
        self.status = {"recommender": ReloadStatus("recommender"), "churn": ReloadStatus("churn")}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="patron-champion-watcher", daemon=True)

    def start(self) -> ChampionWatcher:
        """Start polling every `online.reload_poll_s` seconds."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Ask the thread to stop after its current check."""
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.settings.online.reload_poll_s):
            self.check()

    def check(self) -> None:
        """Compare each alias with the serving version; load, smoke-check and swap the ones that moved."""
        current = self._get()
        if current is None:
            return
        t = self.settings.tracking
        client = MlflowClient(tracking_uri=self.settings.tracking_uri, registry_uri=self.settings.tracking_uri)
        for model, name, serving in (
            ("recommender", t.recommender_model, current.recommender_version),
            ("churn", t.churn_model, current.churn_version),
        ):
            status = self.status[model]
            status.last_checked = datetime.now(UTC).isoformat(timespec="seconds")
            try:
                status.registry_version = champion_version(client, name, t.champion_alias)
                if status.registry_version == serving:
                    continue
                self._load(model, status)
            except Exception as exc:  # noqa: BLE001 - any failure keeps the old model serving
                status.last_error = f"{type(exc).__name__}: {exc}"
                logger.warning("%s reload failed, version %s keeps serving: %s", model, serving, status.last_error)

    def _load(self, model: str, status: ReloadStatus) -> None:
        current = self._get()
        if model == "recommender":
            recommender, version = load_recommender_champion(self.settings)
            smoke_recommender(recommender)
            new = dataclasses.replace(
                current, recommender=recommender, recommender_version=version, recommender_source=REGISTRY_SOURCE
            )
        else:
            churn, version = load_churn_champion(self.settings)
            smoke_churn(churn, current.churn)
            new = dataclasses.replace(current, churn=churn, churn_version=version, churn_source=REGISTRY_SOURCE)
        self._swap(new)  # one reference assignment: a request sees either the old or the new champions
        status.last_error = None
        keep_local_copy(self.settings, model, version)  # only a smoke-checked champion becomes the fallback
        logger.info("%s champion swapped to version %s", model, version)
