"""MLflow Model Registry: version tags and champion promotion guarded by a like-for-like comparison."""

from __future__ import annotations

from dataclasses import dataclass

import mlflow
import numpy as np
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from features.pit import build
from features.tables.store import fingerprint
from patron.config import Settings
from training.mlops import tracking
from training.mlops.metrics import churn_metrics

METRIC_TAG = "patron.primary_metric"
VALUE_TAG = "patron.primary_value"
COMPLETE_TAGS = (tracking.FINGERPRINT_TAG, METRIC_TAG, VALUE_TAG)  # every version registered by training has them


class PromotionRefused(Exception):
    """The candidate does not beat the champion on the same evaluation data (or cannot be compared)."""


@dataclass
class PromotionResult:
    """Which version became champion, which one it replaced and the figures compared."""

    model: str
    name: str
    version: int
    previous: int | None
    metric: str
    candidate_value: float
    champion_value: float | None
    forced: bool
    message: str


LOWER_IS_BETTER = frozenset({"mae", "rmse"})  # primary metrics where the smaller value wins


def registered_name(settings: Settings, model: str) -> str:
    """The registry name for 'recommender', 'churn', 'clv' or 'uplift'."""
    names = {
        "recommender": settings.tracking.recommender_model,
        "churn": settings.tracking.churn_model,
        "clv": settings.tracking.clv_model,
        "uplift": settings.tracking.uplift_model,
    }
    if model not in names:
        raise ValueError(f"model: expected one of {sorted(names)}, got {model!r}")
    return names[model]


def register_version(
    settings: Settings, model: str, model_uri: str, eval_fingerprint: str, metric: str, value: float
) -> int:
    """Register a fully logged model as a new version, its evaluation tags written in the same registry call.

    Called only once every artifact of the run is logged: a training run killed earlier leaves no version, and a
    version never exists without the tags promotion compares.
    """
    tracking.configure(settings)
    tags = {tracking.FINGERPRINT_TAG: eval_fingerprint, METRIC_TAG: metric, VALUE_TAG: repr(value)}
    return int(mlflow.register_model(model_uri, registered_name(settings, model), tags=tags).version)


def incomplete_reason(version: ModelVersion) -> str | None:
    """Why a version cannot be promoted whatever the comparison says (None when it is complete)."""
    if version.status != "READY":
        return f"its registration is {version.status}, not READY"
    missing = [t for t in COMPLETE_TAGS if t not in version.tags]
    if missing:
        return f"it lacks the evaluation tags {missing} (its training run did not finish registering it)"
    return None


def _champion(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def _reevaluate_churn(settings: Settings, candidate: ModelVersion, champion: ModelVersion) -> tuple[float, float]:
    """ROC-AUC of both boosters on the candidate's test set rebuilt from the workspace (same fingerprint only).

    Each version is loaded as the pyfunc it was logged as (training.churn.model.ChurnPyfunc), asked for the
    booster's own probabilities: the ones its logged roc_auc was computed on."""
    test = build.training_set(settings, [build.cutoff_plan(settings).test])
    if fingerprint(test) != candidate.tags.get(tracking.FINGERPRINT_TAG):
        raise PromotionRefused(
            f"champion v{champion.version} and candidate v{candidate.version} were evaluated on different data "
            f"and the candidate's test set can no longer be rebuilt from the workspace; use --force to promote anyway"
        )
    scores = []
    for mv in (candidate, champion):
        model = mlflow.pyfunc.load_model(f"models:/{mv.name}/{mv.version}")
        features = model.metadata.get_input_schema().input_names()
        missing = set(features) - set(test.columns)
        if missing:
            raise PromotionRefused(
                f"champion v{champion.version} needs features the current data lacks: "
                f"{sorted(missing)}; use --force to promote anyway"
            )
        raw = model.predict(test[features], params={"output": "raw"})
        scores.append(churn_metrics(test["churned"], np.asarray(raw))["roc_auc"])
    return scores[0], scores[1]


def promote(settings: Settings, model: str, version: int | None = None, force: bool = False) -> PromotionResult:
    """Point the champion alias at `version` (default: latest) if it beats the champion on the same data."""
    client = tracking.configure(settings)
    name = registered_name(settings, model)
    alias = settings.tracking.champion_alias
    versions = client.search_model_versions(f"name='{name}'")
    if not versions:
        raise PromotionRefused(f"no version of {name} is registered; run `patron train {model}` first")
    number = version if version is not None else max(int(v.version) for v in versions)
    try:
        candidate = client.get_model_version(name, str(number))
    except MlflowException as exc:
        raise PromotionRefused(f"{name} has no version {number}") from exc
    incomplete = incomplete_reason(candidate)
    if incomplete is not None:  # even with force: such a version may lack artifacts serving needs
        raise PromotionRefused(f"{name} v{number} cannot be promoted: {incomplete}")
    metric = candidate.tags.get(METRIC_TAG, "")
    cand_value = float(candidate.tags.get(VALUE_TAG, "nan"))
    champion = _champion(client, name, alias)

    def done(previous: ModelVersion | None, champ_value: float | None, note: str) -> PromotionResult:
        client.set_registered_model_alias(name, alias, str(number))  # one alias write: atomic for readers
        return PromotionResult(
            model,
            name,
            number,
            int(previous.version) if previous else None,
            metric,
            cand_value,
            champ_value,
            force,
            note,
        )

    if champion is None:
        return done(None, None, f"{name} v{number} is now {alias} (there was none); {metric} {cand_value:.4f}")
    if int(champion.version) == number:
        return PromotionResult(
            model, name, number, number, metric, cand_value, cand_value, force, f"{name} v{number} is already {alias}"
        )
    champ_value = float(champion.tags.get(VALUE_TAG, "nan"))
    cand_fp = candidate.tags.get(tracking.FINGERPRINT_TAG)
    champ_fp = champion.tags.get(tracking.FINGERPRINT_TAG)
    try:
        if champion.tags.get(METRIC_TAG) != metric:
            raise PromotionRefused(
                f"candidate v{number} reports {metric} but champion v{champion.version} reports "
                f"{champion.tags.get(METRIC_TAG)}; they cannot be compared"
            )
        where = f"on the same evaluation data (fingerprint {str(cand_fp)[:12]})"
        if cand_fp != champ_fp:
            if model != "churn":
                raise PromotionRefused(
                    f"candidate v{number} {metric} {cand_value:.4f} and champion v{champion.version} "
                    f"{champ_value:.4f} were evaluated on different data (fingerprints {str(cand_fp)[:12]} vs "
                    f"{str(champ_fp)[:12]}) and the {model} model cannot be re-evaluated on it"
                )
            cand_value, champ_value = _reevaluate_churn(settings, candidate, champion)
            where = f"re-evaluated on the candidate's test set (fingerprint {str(cand_fp)[:12]})"
        beats = cand_value < champ_value if metric in LOWER_IS_BETTER else cand_value > champ_value
        if not beats:
            raise PromotionRefused(
                f"candidate v{number} {metric} {cand_value:.4f} does not beat champion "
                f"v{champion.version} {champ_value:.4f} {where}"
            )
    except PromotionRefused as refused:
        if not force:
            raise
        return done(champion, champ_value, f"forced: {name} v{number} is now {alias} although {refused}")
    return done(
        champion,
        champ_value,
        f"{name} v{number} is now {alias}: {metric} {cand_value:.4f} beats "
        f"v{champion.version} {champ_value:.4f} {where}",
    )
