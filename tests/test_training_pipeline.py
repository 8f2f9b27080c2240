"""Training runs end to end on a small workspace: MLflow runs, time-based splits, registered models, determinism."""

from __future__ import annotations

import lightgbm as lgb
import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from sklearn.metrics import roc_auc_score

from features.pit import build
from tests.test_training_fixtures import tables_home, tiny_settings  # noqa: F401 (fixture)
from training.churn.model import ChurnModel
from training.churn.train import split_xy, train_churn
from training.mlops import tracking
from training.mlops.metrics import churn_metrics, lift_at
from training.recommend.als import ALSRecommender
from training.recommend.train import train_recommender


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory):
    return tmp_path_factory.mktemp("mlflow")


@pytest.fixture(scope="module")
def churn_run(tables_home, store):  # noqa: F811
    settings = tiny_settings(tables_home, store)
    return settings, train_churn(settings)


@pytest.fixture(scope="module")
def rec_run(tables_home, store):  # noqa: F811
    settings = tiny_settings(tables_home, store)
    return settings, train_recommender(settings)


def test_churn_cutoffs_are_time_ordered_and_recorded(churn_run) -> None:
    settings, result = churn_run
    run = MlflowClient(settings.tracking_uri).get_run(result.run_id)
    train = [pd.Timestamp(c) for c in run.data.params["train_cutoffs"].split(",")]
    valid, test = pd.Timestamp(run.data.params["valid_cutoff"]), pd.Timestamp(run.data.params["test_cutoff"])
    plan = build.cutoff_plan(settings)
    assert train == plan.train and valid == plan.valid and test == plan.test
    assert max(train) < valid < test
    assert run.data.tags[tracking.CODE_VERSION_TAG]
    assert run.data.params["churn.seed"] == "42"


def test_churn_early_stops_on_valid_and_scores_the_test_cutoff(churn_run) -> None:
    settings, result = churn_run
    booster = ChurnModel.from_registry(settings, str(result.model_version)).booster
    assert isinstance(booster, lgb.Booster)
    assert 0 < booster.num_trees() < settings.churn.num_boost_round  # early stopping cut training short
    X, y = split_xy(build.training_set(settings, [build.cutoff_plan(settings).test]))
    assert set(booster.feature_name()) <= set(build.customer_features(settings, build.cutoff_plan(settings).test))
    assert result.metrics["roc_auc"] == pytest.approx(roc_auc_score(y, booster.predict(X)))
    assert result.metrics["roc_auc"] > 0.6


def test_churn_run_logs_metrics_plots_and_dataset_digests(churn_run) -> None:
    settings, result = churn_run
    client = MlflowClient(settings.tracking_uri)
    run = client.get_run(result.run_id)
    for key in ("roc_auc", "pr_auc", "brier", "lift_top_decile", "rows_training", "rows_validation", "rows_test"):
        assert key in run.data.metrics
    plots = {a.path for a in client.list_artifacts(result.run_id, "plots")}
    assert plots == {f"plots/{n}.png" for n in ("roc", "precision_recall", "calibration", "gain")}
    contexts = {i.tags[0].value for i in run.inputs.dataset_inputs}
    assert contexts == {"training", "validation", "test"}
    assert all(i.dataset.digest and '"num_rows": 0' in i.dataset.profile for i in run.inputs.dataset_inputs)
    assert "settings.yaml" in {a.path for a in client.list_artifacts(result.run_id)}


def test_recommender_run_logs_both_models_metrics_and_registers_a_pyfunc(rec_run) -> None:
    settings, result = rec_run
    client = MlflowClient(settings.tracking_uri)
    run = client.get_run(result.run_id)
    for key in ("recall_at_10", "ndcg_at_10", "map_at_10", "catalogue_coverage", "popularity_ndcg_at_10"):
        assert 0.0 <= run.data.metrics[key] <= 1.0
    assert run.data.params["final_fit_cutoff"] > run.data.params["eval_train_cutoff"]
    assert "plots/als_vs_popularity.png" in {a.path for a in client.list_artifacts(result.run_id, "plots")}
    mv = client.get_model_version(settings.tracking.recommender_model, str(result.model_version))
    assert mv.tags[tracking.FINGERPRINT_TAG] == run.data.tags[tracking.FINGERPRINT_TAG]
    tracking.configure(settings)
    model = mlflow.pyfunc.load_model(f"models:/{settings.tracking.recommender_model}/{result.model_version}")
    rec = model.unwrap_python_model().recommender
    assert isinstance(rec, ALSRecommender)
    known = next(c for c in rec.customer_ids)
    out = model.predict(pd.DataFrame({"customer_id": [known, "nobody"], "k": [3, 2]}))
    assert out.groupby("customer_id")["source"].first().to_dict() == {known: "personal", "nobody": "popular"}
    assert out.loc[out.customer_id == "nobody", "item_id"].tolist() == [i for i, _ in rec.popular(2)]


def test_same_seed_gives_the_same_metrics(tables_home, tmp_path, churn_run, rec_run) -> None:  # noqa: F811
    settings = tiny_settings(tables_home, tmp_path)
    assert train_churn(settings).metrics == churn_run[1].metrics
    assert train_recommender(settings).metrics == rec_run[1].metrics


def test_churn_metrics_values() -> None:
    y = np.array([1, 0, 1, 0, 0, 0, 0, 0, 0, 1])
    p = np.linspace(1, 0, 10)
    assert lift_at(y, p, 0.1) == pytest.approx(1 / 0.3)
    m = churn_metrics(y, p)
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, p)) and m["base_rate"] == pytest.approx(0.3)
    with pytest.raises(ValueError, match="churned"):
        churn_metrics(np.zeros(4), np.ones(4))
