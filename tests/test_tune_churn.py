"""`patron tune churn`: a stored Optuna study on the validation cutoff, nested trials, best version as candidate."""

from __future__ import annotations

import shutil

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from patron.cli.main import app
from patron.config import load_settings
from tests.conftest import Workspace, small_workspace
from training.tune.recommender import study_storage


@pytest.fixture()
def churn_tune_workspace(ingested_workspace: Workspace, tmp_path) -> Workspace:
    """A private copy of the ingested tables, tuned over a narrow, fast space."""
    ws = small_workspace(tmp_path / "tune")
    shutil.copytree(ingested_workspace.settings.tables_dir, ws.settings.tables_dir)
    config = yaml.safe_load(ws.config.read_text())
    config["churn_tune"] = {
        "trials": 3,
        "study": "ch",
        "report_every_rounds": 5,
        "pruner_startup_trials": 1,
        "pruner_warmup_steps": 0,
        "num_leaves": [4, 8],
        "learning_rate": [0.05, 0.1],
    }
    ws.config.write_text(yaml.safe_dump(config))
    return Workspace(load_settings(ws.config), ws.config)


def test_tune_churn_stores_the_study_nests_trials_and_registers_a_candidate(churn_tune_workspace: Workspace) -> None:
    settings = churn_tune_workspace.settings
    result = CliRunner().invoke(app, ["--config", str(churn_tune_workspace.config), "tune", "churn", "--trials", "3"])
    assert result.exit_code == 0, result.output
    assert "registered version 1 as candidate" in result.output

    study = optuna.load_study(study_name="ch", storage=study_storage(settings))
    assert len(study.trials) == 3
    assert {t.state for t in study.trials} <= {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED}
    assert 0 < study.best_value < 1  # a validation log loss

    client = MlflowClient(settings.tracking_uri, settings.tracking_uri)
    parent = client.search_runs(
        [e.experiment_id for e in client.search_experiments()], "tags.`patron.tune.study` = 'ch'"
    )
    assert len(parent) == 1
    trials = client.search_runs([parent[0].info.experiment_id], f"tags.mlflow.parentRunId = '{parent[0].info.run_id}'")
    assert {t.data.tags["optuna.trial"] for t in trials} == {"0", "1", "2"}
    for t in trials:
        assert 4 <= int(t.data.params["num_leaves"]) <= 8
        assert 0.05 <= float(t.data.params["learning_rate"]) <= 0.1
        history = client.get_metric_history(t.info.run_id, "valid_binary_logloss")
        assert history and all(m.step % 5 == 0 for m in history)  # reported every 5 rounds
    assert parent[0].data.metrics["best_valid_binary_logloss"] == pytest.approx(study.best_value)

    name = settings.tracking.churn_model
    candidate = client.get_model_version_by_alias(name, "candidate")
    assert int(candidate.version) == 1 and candidate.tags["patron.tune.study"] == "ch"
    trained = client.get_run(candidate.run_id)
    assert int(trained.data.params["churn.params.num_leaves"]) == study.best_params["num_leaves"]
