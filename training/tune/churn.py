"""`patron tune churn`: an Optuna study of the churn booster on the validation cutoff, best version registered.

Every trial fits on the training cutoffs and is early-stopped and scored (log loss) on the validation cutoff; the
test cutoff is read only by the final `train_churn` of the best parameters, which evaluates but selects nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import mlflow
import optuna
import pandas as pd

from features.pit import build
from patron import progress
from patron.config import ChurnConfig, Settings
from training.churn.train import MODEL, fit_booster, train_churn
from training.mlops import tracking
from training.tune.recommender import open_study, parent_run, register_candidate, seed_by_trial

METRIC = "binary_logloss"


@dataclass
class ChurnTuneResult:
    """The study, its best trial and the version registered from it."""

    study: str
    storage: str
    trials_run: int
    trials_total: int
    pruned: int
    best_value: float
    best_params: dict[str, Any]
    parent_run_id: str
    model_version: int
    test_metrics: dict[str, float]

    def summary(self) -> str:
        """What was tuned, what won and where it went."""
        return (
            f"study {self.study!r}: {self.trials_run} trials run ({self.pruned} pruned in the study), "
            f"{self.trials_total} in the study; best validation log loss {self.best_value:.5f} with "
            f"{self.best_params}; registered version {self.model_version} as candidate (test roc_auc "
            f"{self.test_metrics['roc_auc']:.4f}); promote with `patron promote churn --version "
            f"{self.model_version}`"
        )


def _space(trial: optuna.Trial, settings: Settings) -> ChurnConfig:
    """Churn settings with LightGBM parameters drawn from the churn_tune ranges."""
    cfg = settings.churn_tune
    drawn = {
        "num_leaves": trial.suggest_int("num_leaves", *cfg.num_leaves, log=True),
        "min_data_in_leaf": trial.suggest_int("min_data_in_leaf", *cfg.min_data_in_leaf, log=True),
        "lambda_l2": trial.suggest_float("lambda_l2", *cfg.lambda_l2, log=True),
        "learning_rate": trial.suggest_float("learning_rate", *cfg.learning_rate, log=True),
        "feature_fraction": trial.suggest_float("feature_fraction", *cfg.feature_fraction),
    }
    return settings.churn.model_copy(update={"params": {**settings.churn.params, **drawn}})


def pruning_callback(trial: optuna.Trial, every: int) -> Callable[[lgb.callback.CallbackEnv], None]:
    """LightGBM callback: report the validation log loss every `every` rounds, stop the trial when pruned."""

    def report(env: lgb.callback.CallbackEnv) -> None:
        done = env.iteration + 1
        if done % every:
            return
        value = next(v for _, name, v, _ in env.evaluation_result_list if name == METRIC)
        mlflow.log_metric(f"valid_{METRIC}", value, step=done)
        trial.report(value, done // every)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned after {done} rounds at validation log loss {value:.5f}")

    return report


def objective(settings: Settings, train: pd.DataFrame, valid: pd.DataFrame) -> Callable[[optuna.Trial], float]:
    """Best validation log loss of the booster with the trial's params (a nested MLflow run per trial)."""
    every = settings.churn_tune.report_every_rounds

    def run(trial: optuna.Trial) -> float:
        seed_by_trial(trial, settings.seed)  # workers sharing the study draw different parameters
        cfg = _space(trial, settings)
        with mlflow.start_run(run_name=f"trial-{trial.number}", nested=True):
            mlflow.set_tags({"optuna.study": trial.study.study_name, "optuna.trial": str(trial.number)})
            mlflow.log_params(cfg.params)
            try:
                booster = fit_booster(train, valid, cfg, callbacks=[pruning_callback(trial, every)])
            except optuna.TrialPruned:
                mlflow.set_tag("optuna.state", "PRUNED")
                raise
            value = float(booster.best_score["valid"][METRIC])
            mlflow.set_tag("optuna.state", "COMPLETE")
            mlflow.log_metrics({f"best_valid_{METRIC}": value, "best_iteration": booster.best_iteration})
        return value

    return run


def tune_churn(
    settings: Settings, trials: int | None = None, study_name: str | None = None, echo: Callable[[str], None] = print
) -> ChurnTuneResult:
    """Run (or continue) the study under one parent MLflow run, then register the best params' model as candidate."""

    cfg = settings.churn_tune
    trials, study_name = trials or cfg.trials, study_name or cfg.study
    study, storage = open_study(
        settings,
        study_name,
        "minimize",
        optuna.pruners.MedianPruner(n_startup_trials=cfg.pruner_startup_trials, n_warmup_steps=cfg.pruner_warmup_steps),
        settings.seed,
    )
    tracking.configure(settings)
    plan = build.cutoff_plan(settings)
    train, valid = build.training_set(settings, plan.train), build.training_set(settings, [plan.valid])
    with parent_run(
        MODEL,
        study_name,
        study,
        storage,
        trials,
        settings.seed,
        f"MedianPruner(startup={cfg.pruner_startup_trials}, warmup_steps={cfg.pruner_warmup_steps})",
        {
            "train_cutoffs": ",".join(c.date().isoformat() for c in plan.train),
            "valid_cutoff": plan.valid.date().isoformat(),
        },
    ) as parent:
        mlflow.log_params(tracking.flat_params(cfg, "churn_tune"))
        tracking.log_dataset_digest(train, "churn_training_set", "training")
        tracking.log_dataset_digest(valid, "churn_validation_set", "validation")
        study.optimize(objective(settings, train, valid), n_trials=trials, show_progress_bar=progress.enabled())
        pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)
        mlflow.log_metrics({f"best_valid_{METRIC}": study.best_value, "trials_pruned": pruned})
        mlflow.log_params({f"best.{k}": v for k, v in study.best_params.items()})
    best = settings.churn.model_copy(update={"params": {**settings.churn.params, **study.best_params}})
    echo(f"best validation log loss {study.best_value:.5f} ({study.best_params}); refitting and registering")
    result = train_churn(settings.model_copy(update={"churn": best}))
    register_candidate(settings, MODEL, result.model_version, study_name, parent.info.run_id, result.run_id)
    return ChurnTuneResult(
        study_name,
        storage,
        trials,
        len(study.trials),
        pruned,
        float(study.best_value),
        dict(study.best_params),
        parent.info.run_id,
        result.model_version,
        result.metrics,
    )
