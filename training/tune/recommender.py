"""`patron tune recommender`: an Optuna study of the recommender (ALS, or the two-stage pipeline when it is the
configured one), stored beside MLflow, best version registered."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import mlflow
import optuna
import pandas as pd
from sqlalchemy.exc import IntegrityError
from threadpoolctl import threadpool_limits

from features.pit import build
from patron import progress
from patron.config import RecommenderConfig, Settings
from training.mlops import registry, tracking
from training.mlops.metrics import ranking_metrics
from training.recommend.als import fit_recommender
from training.recommend.train import MODEL, consenting_customers, holdout_matrices, train_recommender
from training.tune.two_stage_search import configured_two_stage, two_stage_space

PARENT_TAG = "patron.tune.study"


class TuneError(RuntimeError):
    """The study cannot be stored or run (a message names the setting at fault)."""


@dataclass
class TuneResult:
    """The study, its best trial and the version registered from it."""

    study: str
    storage: str
    trials_run: int
    trials_total: int
    best_value: float
    best_params: dict[str, Any]
    parent_run_id: str
    model_version: int
    test_metrics: dict[str, float]
    k: int

    def summary(self) -> str:
        """What was tuned, what won and where it went."""
        return (
            f"study {self.study!r}: {self.trials_run} trials run, {self.trials_total} in the study; best "
            f"validation ndcg@{self.k} {self.best_value:.4f} with {self.best_params}; registered version "
            f"{self.model_version} as candidate (test ndcg@{self.k} {self.test_metrics[f'ndcg_at_{self.k}']:.4f}); "
            f"promote with `patron promote recommender --version {self.model_version}`"
        )


def study_storage(settings: Settings) -> str:
    """The study's storage URL: tune.storage, or optuna.db beside the SQLite tracking store."""
    cfg = settings.tune
    if cfg.storage:
        return cfg.storage
    uri = settings.tracking_uri
    if not uri.startswith("sqlite:///"):
        raise TuneError(
            f"tune.storage: the tracking URI {uri} is not a SQLite file, so set tune.storage to a "
            f"database URL the workers share (e.g. the tracking server's PostgreSQL, another schema)"
        )
    return f"sqlite:///{Path(uri.removeprefix('sqlite:///')).with_name(cfg.sqlite_file)}"


def open_study(
    settings: Settings, study_name: str, direction: str, pruner: optuna.pruners.BasePruner, seed: int
) -> tuple[optuna.Study, str]:
    """Create or load the named study in the study storage, its TPE seed moved on by the trials already stored."""
    storage = study_storage(settings)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for attempt in range(settings.tune.storage_open_attempts):
        try:
            study = optuna.create_study(
                study_name=study_name, storage=storage, direction=direction, load_if_exists=True, pruner=pruner
            )
            break
        except IntegrityError:  # workers starting together race to create the schema: the loser finds it made
            if attempt + 1 == settings.tune.storage_open_attempts:
                raise TuneError(f"tune.storage: cannot create the study schema in {storage}") from None
        except Exception as exc:  # bad URLs and unreachable servers surface as many exception types
            raise TuneError(f"tune.storage: cannot open the study storage {storage}: {exc}") from exc
    # a worker joining the study draws its own sequence: the seed moves on with the trials already stored
    study.sampler = optuna.samplers.TPESampler(seed=seed + len(study.trials))
    return study, storage


def seed_by_trial(trial: optuna.Trial, seed: int) -> None:
    """Seed the sampler by the trial's number (unique across workers), so workers starting together on one study
    draw different parameters, reproducibly."""
    trial.study.sampler = optuna.samplers.TPESampler(seed=seed + trial.number)


def register_candidate(
    settings: Settings, model: str, version: int, study_name: str, parent_run_id: str, train_run_id: str
) -> None:
    """Give the refitted best version the candidate alias and link it with the study's parent run."""
    client = tracking.configure(settings)
    name = registry.registered_name(settings, model)
    client.set_registered_model_alias(name, settings.tune.candidate_alias, str(version))
    client.set_model_version_tag(name, str(version), PARENT_TAG, study_name)
    client.set_tag(parent_run_id, "patron.registered_version", str(version))
    client.set_tag(parent_run_id, "patron.train_run", train_run_id)


@contextmanager
def parent_run(
    model: str,
    study_name: str,
    study: optuna.Study,
    storage: str,
    trials: int,
    seed: int,
    pruner: str,
    params: dict[str, Any],
) -> Iterator[mlflow.ActiveRun]:
    """The study's parent MLflow run (trials nest under it), tagged and with the study's settings logged."""
    with mlflow.start_run(run_name=f"tune-{model}-{study_name}") as parent:
        mlflow.set_tags(
            {tracking.CODE_VERSION_TAG: tracking.code_version(), tracking.MODEL_KIND_TAG: model, PARENT_TAG: study_name}
        )
        mlflow.log_params(
            {
                "study": study_name,
                "storage": storage.split("@")[-1],
                "trials": trials,
                "seed": seed + len(study.trials),
                "sampler": "TPESampler",
                "pruner": pruner,
                **params,
            }
        )
        yield parent


def _space(trial: optuna.Trial, settings: Settings) -> RecommenderConfig:
    """Recommender settings drawn from the tune section's ranges (iterations in whole blocks)."""
    cfg = settings.tune
    return settings.recommender.model_copy(
        update={
            "factors": trial.suggest_int("factors", *cfg.factors, log=True),
            "regularization": trial.suggest_float("regularization", *cfg.regularization, log=True),
            "alpha": trial.suggest_float("alpha", *cfg.alpha, log=True),
            "iterations": trial.suggest_int(
                "iterations", cfg.iteration_block, cfg.max_iterations, step=cfg.iteration_block
            ),
        }
    )


def validation_data(settings: Settings) -> tuple[pd.DataFrame, pd.Timestamp, pd.Timestamp]:
    """Interactions before the validation window and the window: the holdout_days before train's test holdout."""

    days = pd.Timedelta(days=settings.recommender.holdout_days)
    test_start = build.data_end(settings) - days  # train_recommender's test holdout: never read here
    valid_start = test_start - days
    return build.interactions(settings, valid_start), valid_start, test_start


def objective(
    settings: Settings, train: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp
) -> Callable[[optuna.Trial], float]:
    """Validation NDCG@k of ALS with the trial's params, reported after every block of iterations (a nested run)."""
    consent = consenting_customers(settings, train["customer_id"])
    block = settings.tune.iteration_block

    def run(trial: optuna.Trial) -> float:
        seed_by_trial(trial, settings.seed)
        cfg = _space(trial, settings)
        pruned = False
        with mlflow.start_run(run_name=f"trial-{trial.number}", nested=True):
            mlflow.set_tags({"optuna.study": trial.study.study_name, "optuna.trial": str(trial.number)})
            mlflow.log_params(cfg.model_dump(mode="json"))
            rec = fit_recommender(train, cfg.model_copy(update={"iterations": block}), consent)
            valid, _ = holdout_matrices(settings, rec, train, start, end)
            model = rec.model  # continue the same factors block by block: fit() keeps existing factors
            model.regularization, model.alpha, model.iterations = cfg.regularization, cfg.alpha, block
            model.random_state, model.calculate_training_loss = cfg.seed, False
            done = block
            while True:
                value = ranking_metrics(model, rec.user_items, valid, cfg.k)[f"ndcg_at_{cfg.k}"]
                mlflow.log_metric(f"valid_ndcg_at_{cfg.k}", value, step=done)
                trial.report(value, done // block)
                if done >= cfg.iterations or trial.should_prune():
                    pruned = done < cfg.iterations
                    break
                with threadpool_limits(1, "blas"):
                    model.fit(rec.user_items, show_progress=False)
                done += block
            mlflow.set_tag("optuna.state", "PRUNED" if pruned else "COMPLETE")
            mlflow.log_metric("iterations_run", done)
        if pruned:
            raise optuna.TrialPruned(f"pruned after {done} iterations at validation ndcg {value:.4f}")
        return value

    return run


def two_stage_objective(
    settings: Settings, train: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp
) -> Callable[[optuna.Trial], float]:
    """Validation NDCG@k of the two-stage pipeline with the trial's sources, candidate count and ranker settings (a
    nested run); the ALS source keeps the recommender section's settings and is fit once."""
    from training.recommend.two_stage import fit_two_stage

    rec = fit_recommender(train, settings.recommender, consenting_customers(settings, train["customer_id"]))
    valid, _ = holdout_matrices(settings, rec, train, start, end)
    k = settings.recommender.k

    def run(trial: optuna.Trial) -> float:
        seed_by_trial(trial, settings.seed)
        cfg = two_stage_space(trial, settings.two_stage)
        with mlflow.start_run(run_name=f"trial-{trial.number}", nested=True):
            mlflow.set_tags({"optuna.study": trial.study.study_name, "optuna.trial": str(trial.number)})
            mlflow.log_params(tracking.flat_params(cfg, "two_stage"))
            two = fit_two_stage(settings.model_copy(update={"two_stage": cfg}), rec, start)
            value = ranking_metrics(SimpleNamespace(recommend=two.recommend_batch), rec.user_items, valid, k)[
                f"ndcg_at_{k}"
            ]
            mlflow.log_metric(f"valid_ndcg_at_{k}", value)
            mlflow.set_tag("optuna.state", "COMPLETE")
        return value

    return run


def tune_recommender(
    settings: Settings, trials: int | None = None, study_name: str | None = None, echo: Callable[[str], None] = print
) -> TuneResult:
    """Run (or continue) the study under one parent MLflow run, then register the best params' model as candidate.

    With `recommender.pipeline: two_stage` the study tunes the pipeline's sources, candidate count and ranker (its
    own study, default name `<tune.study>-two-stage`; no pruning: the ranker early-stops inside each trial)."""
    cfg = settings.tune
    two_stage = settings.recommender.pipeline == "two_stage"
    trials = trials or cfg.trials
    study_name = study_name or (f"{cfg.study}-two-stage" if two_stage else cfg.study)
    pruner: optuna.pruners.BasePruner = (
        optuna.pruners.NopPruner()
        if two_stage
        else optuna.pruners.MedianPruner(
            n_startup_trials=cfg.pruner_startup_trials, n_warmup_steps=cfg.pruner_warmup_blocks
        )
    )
    study, storage = open_study(settings, study_name, "maximize", pruner, settings.seed)
    if two_stage and not study.trials:
        study.enqueue_trial(configured_two_stage(settings.two_stage))
    tracking.configure(settings)
    train, start, end = validation_data(settings)
    pruner_text = (
        "none (two-stage)"
        if two_stage
        else f"MedianPruner(startup={cfg.pruner_startup_trials}, warmup_blocks={cfg.pruner_warmup_blocks})"
    )
    with parent_run(
        MODEL,
        study_name,
        study,
        storage,
        trials,
        settings.seed,
        pruner_text,
        {
            "valid_start": start.date().isoformat(),
            "valid_end": end.date().isoformat(),
            "pipeline": settings.recommender.pipeline,
        },
    ) as parent:
        mlflow.log_params(tracking.flat_params(cfg, "tune"))
        tracking.log_dataset_digest(train, "interactions_before_validation", "training")
        run = (two_stage_objective if two_stage else objective)(settings, train, start, end)
        study.optimize(run, n_trials=trials, show_progress_bar=progress.enabled())
        mlflow.log_metric(f"best_valid_ndcg_at_{settings.recommender.k}", study.best_value)
        mlflow.log_params({f"best.{k}": v for k, v in study.best_params.items()})
    echo(f"best validation ndcg {study.best_value:.4f} ({study.best_params}); refitting and registering")
    if two_stage:
        best = settings.model_copy(update={"two_stage": two_stage_space(study.best_trial, settings.two_stage)})
    else:
        best = settings.model_copy(update={"recommender": settings.recommender.model_copy(update=study.best_params)})
    result = train_recommender(best)
    register_candidate(settings, MODEL, result.model_version, study_name, parent.info.run_id, result.run_id)
    return TuneResult(
        study_name,
        storage,
        trials,
        len(study.trials),
        float(study.best_value),
        dict(study.best_params),
        parent.info.run_id,
        result.model_version,
        result.metrics,
        settings.recommender.k,
    )
