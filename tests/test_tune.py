"""`patron tune recommender`: a stored Optuna study, nested MLflow runs, the best version registered as candidate."""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import mlflow
import optuna
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from patron.cli.main import app
from patron.config import load_settings
from tests.conftest import Workspace, small_workspace
from training.mlops.registry import promote
from training.recommend.train import train_recommender
from training.tune.recommender import TuneError, configured_two_stage, study_storage, tune_recommender


@pytest.fixture()
def tune_workspace(ingested_workspace: Workspace, tmp_path) -> Workspace:
    """A private copy of the ingested tables with a champion recommender, tuned over a narrow, fast space."""
    ws = small_workspace(tmp_path / "tune")
    shutil.copytree(ingested_workspace.settings.tables_dir, ws.settings.tables_dir)
    config = yaml.safe_load(ws.config.read_text())
    config["tune"] = {
        "trials": 3,
        "study": "rec",
        "iteration_block": 2,
        "max_iterations": 6,
        "factors": [4, 16],
        "pruner_startup_trials": 1,
    }
    ws.config.write_text(yaml.safe_dump(config))
    ws = Workspace(load_settings(ws.config), ws.config)
    train_recommender(ws.settings)
    promote(ws.settings, "recommender")
    return ws


def _children(client: MlflowClient, parent_id: str) -> list:
    experiment = client.get_run(parent_id).info.experiment_id
    return client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent_id}'")


def test_tune_stores_the_study_nests_trials_and_registers_a_candidate(tune_workspace: Workspace) -> None:
    settings = tune_workspace.settings
    client = MlflowClient(settings.tracking_uri, settings.tracking_uri)
    name = settings.tracking.recommender_model
    champion = int(client.get_model_version_by_alias(name, settings.tracking.champion_alias).version)

    first = tune_recommender(settings)
    trials = _children(client, first.parent_run_id)
    assert len(trials) == 3
    assert {t.data.tags["optuna.trial"] for t in trials} == {"0", "1", "2"}
    for t in trials:
        assert 4 <= int(t.data.params["factors"]) <= 16 and int(t.data.params["iterations"]) in (2, 4, 6)
        assert "valid_ndcg_at_10" in t.data.metrics
    study = optuna.load_study(study_name="rec", storage=study_storage(settings))
    assert len(study.trials) == 3 and first.trials_total == 3
    assert study.best_value == pytest.approx(first.best_value)
    assert int(client.get_model_version_by_alias(name, "candidate").version) == first.model_version
    assert int(client.get_model_version_by_alias(name, settings.tracking.champion_alias).version) == champion
    assert champion < first.model_version
    registered = client.get_model_version(name, str(first.model_version))
    assert registered.tags["patron.tune.study"] == "rec"
    train_run = client.get_run(registered.run_id)
    assert int(train_run.data.params["recommender.factors"]) == first.best_params["factors"]

    # a second invocation (another worker) continues the same study under its own parent run
    result = CliRunner().invoke(app, ["--config", str(tune_workspace.config), "tune", "recommender", "--trials", "2"])
    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name="rec", storage=study_storage(settings))
    assert len(study.trials) == 5
    parents = client.search_runs(
        [client.get_run(first.parent_run_id).info.experiment_id], "tags.`patron.tune.study` = 'rec'"
    )
    assert len(parents) == 2
    second = next(p for p in parents if p.info.run_id != first.parent_run_id)
    assert len(_children(client, second.info.run_id)) == 2
    candidate = client.get_model_version_by_alias(name, "candidate").version
    assert int(candidate) == first.model_version + 1
    assert int(client.get_model_version_by_alias(name, settings.tracking.champion_alias).version) == champion


def test_with_the_two_stage_pipeline_the_study_tunes_it_from_the_configured_one(tune_workspace: Workspace) -> None:
    config = yaml.safe_load(tune_workspace.config.read_text())
    config["recommender"] = {**config.get("recommender", {}), "pipeline": "two_stage"}
    config["two_stage"] = {"label_windows": 1, "candidates_per_source": 60, "num_boost_round": 60}
    config["tune"]["trials"] = 2
    tune_workspace.config.write_text(yaml.safe_dump(config))
    settings = load_settings(tune_workspace.config)
    client = MlflowClient(settings.tracking_uri, settings.tracking_uri)
    name = settings.tracking.recommender_model
    champion = client.get_model_version_by_alias(name, settings.tracking.champion_alias).version

    result = tune_recommender(settings)
    assert result.study == "rec-two-stage"  # its own study: the ALS study's parameters differ
    study = optuna.load_study(study_name="rec-two-stage", storage=study_storage(settings))
    assert len(study.trials) == 2
    configured = configured_two_stage(settings.two_stage)
    assert configured["candidates_per_source"] == 60
    assert configured["learning_rate"] == settings.two_stage.ranker_params["learning_rate"]  # the configured one
    assert study.trials[0].params == pytest.approx(configured)  # the first trial is the configured pipeline
    trials = {int(t.data.tags["optuna.trial"]): t for t in _children(client, result.parent_run_id)}
    assert set(trials) == {0, 1}
    for number, run in trials.items():  # each trial's nested run holds its pipeline and validation score
        assert run.data.metrics["valid_ndcg_at_10"] == pytest.approx(study.trials[number].value)
        assert (
            int(run.data.params["two_stage.candidates_per_source"])
            == study.trials[number].params["candidates_per_source"]
        )
    assert result.best_value == max(t.value for t in study.trials)
    registered = client.get_model_version(name, str(result.model_version))
    assert registered.tags["patron.tune.study"] == "rec-two-stage"
    train_run = client.get_run(registered.run_id)
    best = study.best_trial.params
    assert int(train_run.data.params["two_stage.candidates_per_source"]) == best["candidates_per_source"]
    assert float(train_run.data.params["two_stage.ranker_params.learning_rate"]) == pytest.approx(best["learning_rate"])
    assert "als_ndcg_at_10" in train_run.data.metrics  # trained as a two-stage pipeline, ALS beside it
    assert int(client.get_model_version_by_alias(name, "candidate").version) == result.model_version
    assert client.get_model_version_by_alias(name, settings.tracking.champion_alias).version == champion


def test_storage_must_be_named_when_tracking_is_not_a_sqlite_file(tmp_path) -> None:
    ws = small_workspace(tmp_path)
    remote = ws.settings.model_copy(
        update={"tracking": ws.settings.tracking.model_copy(update={"uri": "http://127.0.0.1:5000"})}
    )
    with pytest.raises(TuneError, match="tune.storage"):
        study_storage(remote)
    named = remote.model_copy(update={"tune": remote.tune.model_copy(update={"storage": "sqlite:///x.db"})})
    assert study_storage(named) == "sqlite:///x.db"
    assert study_storage(ws.settings).endswith("/workspace/optuna.db")


PG = "postgresql://postgres@127.0.0.1:5432"


@pytest.fixture()
def postgres_study_db() -> Iterator[str]:
    """A scratch PostgreSQL database for the study (the production profile's server), dropped afterwards."""
    import psycopg

    db = f"patron_study_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {db}")
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{db}"
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


@pytest.mark.integration
def test_two_processes_work_on_one_study_stored_in_postgres(tune_workspace: Workspace, postgres_study_db: str) -> None:
    config = yaml.safe_load(tune_workspace.config.read_text())
    # no pruning before two trials are done: otherwise whichever worker finishes first may prune the other's trial
    config["tune"] = {**config["tune"], "storage": postgres_study_db, "study": "shared", "pruner_startup_trials": 2}
    tune_workspace.config.write_text(yaml.safe_dump(config))
    command = [
        str(Path(sys.executable).parent / "patron"),
        "--config",
        str(tune_workspace.config),
        "tune",
        "recommender",
        "--trials",
        "1",
    ]
    workers = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [w.communicate(timeout=300)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    study = optuna.load_study(study_name="shared", storage=postgres_study_db)
    assert len(study.trials) == 2 and all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    assert len({t.params["factors"] for t in study.trials} | {t.params["alpha"] for t in study.trials}) > 2
    assert study_storage(load_settings(tune_workspace.config)) == postgres_study_db


def test_a_lost_dataset_insert_race_is_retried_and_other_errors_are_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two tuning workers logging the same dataset at once: the loser's insert hits the store's unique row."""
    from mlflow.exceptions import MlflowException

    from training.mlops import tracking

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setattr(mlflow.tracking.fluent, "_active_experiment_id", None)  # restored after the test
    mlflow.set_experiment("race")
    real, calls = mlflow.log_input, []

    def lose_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise MlflowException(
                "(sqlite3.IntegrityError) UNIQUE constraint failed: datasets.experiment_id, "
                "datasets.name, datasets.digest"
            )
        return real(*args, **kwargs)

    frame = pd.DataFrame({"customer_id": ["a", "b"], "weight": [1.0, 2.0]})
    monkeypatch.setattr(tracking.mlflow, "log_input", lose_once)
    with mlflow.start_run() as run:
        digest = tracking.log_dataset_digest(frame, "interactions", "training")
    assert len(calls) == 2
    inputs = mlflow.get_run(run.info.run_id).inputs.dataset_inputs
    assert [(i.dataset.name, i.dataset.digest) for i in inputs] == [("interactions", digest[:32])]

    def fail(*args, **kwargs):
        calls.append(1)
        raise MlflowException("the tracking server is read-only")

    monkeypatch.setattr(tracking.mlflow, "log_input", fail)
    calls.clear()
    with mlflow.start_run(), pytest.raises(MlflowException, match="read-only"):
        tracking.log_dataset_digest(frame, "interactions", "training")
    assert len(calls) == 1
    mlflow.set_tracking_uri(previous)
