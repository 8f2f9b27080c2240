"""Acceptance on the default synthetic retailer: the recommender beats popularity, churn comes near the oracle."""

from __future__ import annotations

import pytest

from patron.config import load_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def default_workspace(tmp_path_factory, monkeypatch_module):
    from features.ingest.pipeline import ingest_source
    from features.synthetic.generate import generate

    monkeypatch_module.setenv("PATRON_HOME", str(tmp_path_factory.mktemp("default_ws")))
    settings = load_settings()  # the default size: 5,000 customers, 1,000 items, 540 days
    generate(settings)
    ingest_source(settings, source="synthetic")
    return settings


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_recommender_clearly_beats_popularity(default_workspace):
    from training.recommend.train import train_recommender

    m = train_recommender(default_workspace).metrics
    assert m["ndcg_at_10"] > 3 * m["popularity_ndcg_at_10"]
    assert m["recall_at_10"] > 3 * m["popularity_recall_at_10"]


def test_churn_auc_within_005_of_the_oracle(default_workspace):
    from benchmarks.churn_oracle import churn_oracle_gap
    from training.churn.train import train_churn
    from training.mlops.registry import promote

    result = train_churn(default_workspace)
    promote(default_workspace, "churn")
    gap = churn_oracle_gap(default_workspace)
    assert gap.model_version == str(result.model_version)
    assert gap.model_auc == pytest.approx(result.metrics["roc_auc"], abs=1e-9)
    assert 0.5 < gap.oracle_auc <= 1.0
    assert gap.gap < 0.05, gap.summary()
