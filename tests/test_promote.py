"""Promotion to the champion alias: first promotion, refusal of a worse model, --force, fingerprints, CLI."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from patron.cli.main import app
from patron.config import DEFAULT_CONFIG
from tests.test_training_fixtures import tables_home, tiny_settings  # noqa: F401 (fixture)
from training.churn.train import train_churn
from training.mlops import tracking
from training.mlops.registry import PromotionRefused, promote
from training.recommend.train import train_recommender


def _champion(settings, name: str) -> int:
    return int(MlflowClient(settings.tracking_uri).get_model_version_by_alias(name, "champion").version)


def test_churn_promotion_guarded_by_the_test_metric(tables_home, tmp_path) -> None:  # noqa: F811
    good_settings = tiny_settings(tables_home, tmp_path)
    # A model that cannot split (every leaf would need more rows than there are) ranks no better than chance.
    bad_settings = tiny_settings(
        tables_home, tmp_path, churn={"num_boost_round": 1, "params": {"min_data_in_leaf": 10**9}}
    )
    name = good_settings.tracking.churn_model

    with pytest.raises(PromotionRefused, match="no version"):
        promote(good_settings, "churn")
    good = train_churn(good_settings)
    first = promote(good_settings, "churn")
    assert first.version == good.model_version and first.previous is None
    assert _champion(good_settings, name) == good.model_version

    bad = train_churn(bad_settings)
    assert bad.metrics["roc_auc"] < good.metrics["roc_auc"]
    with pytest.raises(PromotionRefused) as refused:
        promote(good_settings, "churn")  # latest = the worse one
    message = str(refused.value)
    assert f"v{bad.model_version}" in message and f"v{good.model_version}" in message
    assert f"{bad.metrics['roc_auc']:.4f}" in message and f"{good.metrics['roc_auc']:.4f}" in message
    assert "same evaluation data" in message
    assert _champion(good_settings, name) == good.model_version  # refusal leaves the alias alone

    # Different evaluation data: both boosters are re-scored on the candidate's test set, rebuilt from the workspace.
    client = MlflowClient(good_settings.tracking_uri)
    good_fp = client.get_model_version(name, str(good.model_version)).tags[tracking.FINGERPRINT_TAG]
    client.set_model_version_tag(name, str(good.model_version), tracking.FINGERPRINT_TAG, "older-data")
    with pytest.raises(PromotionRefused, match="re-evaluated on the candidate's test set") as refused:
        promote(good_settings, "churn")
    assert f"{bad.metrics['roc_auc']:.4f}" in str(refused.value)
    client.set_model_version_tag(name, str(bad.model_version), tracking.FINGERPRINT_TAG, "vanished-data")
    with pytest.raises(PromotionRefused, match="can no longer be rebuilt"):
        promote(good_settings, "churn")
    client.set_model_version_tag(name, str(good.model_version), tracking.FINGERPRINT_TAG, good_fp)

    forced = promote(good_settings, "churn", version=bad.model_version, force=True)
    assert forced.forced and forced.previous == good.model_version
    assert _champion(good_settings, name) == bad.model_version

    back = promote(good_settings, "churn", version=good.model_version)  # better than the forced champion
    assert back.previous == bad.model_version and _champion(good_settings, name) == good.model_version


def test_recommender_first_promotion_then_refusal_across_different_data(tables_home, tmp_path) -> None:  # noqa: F811
    settings = tiny_settings(tables_home, tmp_path)
    name = settings.tracking.recommender_model
    v1 = train_recommender(settings)
    assert promote(settings, "recommender").version == v1.model_version
    v2 = train_recommender(settings)
    client = MlflowClient(settings.tracking_uri)
    client.set_model_version_tag(name, str(v2.model_version), tracking.FINGERPRINT_TAG, "other-data")
    with pytest.raises(PromotionRefused, match="different data"):
        promote(settings, "recommender")
    # identical training, identical metric: not an improvement either
    client.set_model_version_tag(
        name,
        str(v2.model_version),
        tracking.FINGERPRINT_TAG,
        client.get_model_version(name, str(v1.model_version)).tags[tracking.FINGERPRINT_TAG],
    )
    with pytest.raises(PromotionRefused, match="does not beat"):
        promote(settings, "recommender")
    assert promote(settings, "recommender", force=True).version == v2.model_version
    assert _champion(settings, name) == v2.model_version


def test_cli_promote_exit_codes(tables_home, tmp_path, monkeypatch) -> None:  # noqa: F811
    store = tmp_path / "store"
    config = tmp_path / "cfg.yaml"
    config.write_text(
        f"extends: {DEFAULT_CONFIG}\n"
        f"tracking:\n  uri: sqlite:///{store / 'mlflow.db'}\n  artifact_location: {(store / 'art').as_uri()}\n"
        "churn:\n  num_boost_round: 1\n  early_stopping_rounds: 1\n"
    )
    monkeypatch.setenv("PATRON_HOME", str(tables_home))
    runner = CliRunner()
    result = runner.invoke(app, ["--config", str(config), "promote", "churn"])
    assert result.exit_code == 1 and "no version" in result.output
    result = runner.invoke(app, ["--config", str(config), "train", "churn"])
    assert result.exit_code == 0, result.output
    assert "registered version 1" in result.output and "roc_auc=" in result.output
    result = runner.invoke(app, ["--config", str(config), "promote", "churn"])
    assert result.exit_code == 0 and "v1 is now champion" in result.output


def test_recommender_promotion_picks_on_merit_whatever_the_pipeline(tables_home, tmp_path) -> None:  # noqa: F811
    """A two-stage candidate replaces an ALS champion it beats on the same holdout, and an ALS candidate wins back
    from a two-stage champion it beats: the pipelines are compared on one holdout, one metric."""
    weak_als = tiny_settings(tables_home, tmp_path, recommender={"factors": 1, "iterations": 1})
    two_stage = tiny_settings(
        tables_home, tmp_path, recommender={"pipeline": "two_stage"}, two_stage={"label_windows": 1}
    )
    weak_two_stage = tiny_settings(  # popularity alone, no ranker
        tables_home,
        tmp_path,
        recommender={"pipeline": "two_stage"},
        two_stage={
            "ranker": False,
            "sources": {s: s == "popular" for s in ("als", "item_item", "ease", "copurchase", "trending", "popular")},
        },
    )
    als = tiny_settings(tables_home, tmp_path, recommender={"pipeline": "als"})
    name = als.tracking.recommender_model
    client = tracking.configure(als)  # this store for the registry too, whatever an earlier test pointed MLflow at

    def trained(settings) -> tuple[int, float, str]:
        result = train_recommender(settings)
        tags = client.get_model_version(name, str(result.model_version)).tags
        return result.model_version, result.metrics["ndcg_at_10"], tags[tracking.FINGERPRINT_TAG]

    v1, ndcg1, fp1 = trained(weak_als)
    assert promote(als, "recommender").version == v1
    v2, ndcg2, fp2 = trained(two_stage)
    assert fp2 == fp1  # one holdout, whatever the pipeline
    assert ndcg2 > ndcg1
    moved = promote(als, "recommender")
    assert moved.version == v2 and moved.previous == v1 and "same evaluation data" in moved.message
    v3, ndcg3, _ = trained(weak_two_stage)
    assert ndcg3 < ndcg2
    with pytest.raises(PromotionRefused, match="does not beat"):
        promote(als, "recommender")
    assert promote(als, "recommender", version=v3, force=True).version == v3
    v4, ndcg4, fp4 = trained(als)
    assert fp4 == fp1 and ndcg4 > ndcg3
    back = promote(als, "recommender")  # ALS wins back on merit
    assert back.version == v4 and back.previous == v3 and _champion(als, name) == v4
