"""Which registered version and MLflow run a report or a comparison reads: champion, latest candidate or a run."""

from __future__ import annotations

from dataclasses import dataclass

from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from patron.config import Settings
from training.mlops import tracking


class ReportError(RuntimeError):
    """A report or comparison cannot be made (no such run, no registered version); the message says what to do."""


@dataclass(frozen=True)
class ModelRun:
    """A registered model version and the MLflow run that trained it."""

    name: str
    version: str
    run_id: str
    params: dict[str, str]


def registered_name(settings: Settings, model: str) -> str:
    """The registry name of 'recommender', 'churn', 'clv' or 'uplift'."""
    t = settings.tracking
    names = {"recommender": t.recommender_model, "churn": t.churn_model, "clv": t.clv_model, "uplift": t.uplift_model}
    if model not in names:
        raise ReportError(f"model: expected one of {sorted(names)}, got {model!r}")
    return names[model]


def _versions(settings: Settings, name: str) -> list[ModelVersion]:
    client = tracking.configure(settings)
    return sorted(client.search_model_versions(f"name='{name}'"), key=lambda v: int(v.version))


def _model_run(settings: Settings, mv: ModelVersion) -> ModelRun:
    run = tracking.configure(settings).get_run(mv.run_id)
    return ModelRun(mv.name, str(mv.version), mv.run_id, dict(run.data.params))


def champion_run(settings: Settings, model: str, run_id: str | None = None) -> ModelRun:
    """The version trained by `run_id`, else the champion, else the latest version (ReportError when none)."""
    name = registered_name(settings, model)
    versions = _versions(settings, name)
    if not versions:
        raise ReportError(f"no {name} version is registered: run `patron train {model}` first")
    if run_id is not None:
        mine = [v for v in versions if v.run_id == run_id]
        if not mine:
            raise ReportError(
                f"--run {run_id}: no {name} version was registered by that run; runs with a version: "
                + ", ".join(f"{v.run_id} (v{v.version})" for v in versions[-5:])
            )
        return _model_run(settings, mine[-1])
    try:
        return _model_run(
            settings, tracking.configure(settings).get_model_version_by_alias(name, settings.tracking.champion_alias)
        )
    except MlflowException:
        return _model_run(settings, versions[-1])


def champion_and_candidate(settings: Settings, model: str) -> tuple[ModelRun, ModelRun]:
    """The champion and the latest version that is not the champion (ReportError when either is missing)."""
    name = registered_name(settings, model)
    alias = settings.tracking.champion_alias
    try:
        champion = tracking.configure(settings).get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        raise ReportError(f"{name} has no {alias}: promote one with `patron promote {model}`") from exc
    others = [v for v in _versions(settings, name) if str(v.version) != str(champion.version)]
    if not others:
        raise ReportError(
            f"{name} has no version besides {alias} v{champion.version}: train a candidate with `patron train {model}`"
        )
    return _model_run(settings, champion), _model_run(settings, others[-1])
