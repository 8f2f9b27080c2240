"""One pipeline: the recsys bench's Patron row is what `patron train recommender` ships and the service loads."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import yaml

from patron.config import load_settings
from tests.conftest import Workspace

# small, with tuned-looking peer params: the bench hands its tuned peers to the pipeline the same way
TWO_STAGE = {
    "label_windows": 1,
    "candidates_per_source": 60,
    "peers": {"ease": {"l2": 50.0}, "cosine": {"K": 40}},
    "ease_dense_max_items": 100,  # the test catalogue is larger: EASE goes sparse, as on a large retailer
    "ease_neighbours": 50,
}


@pytest.fixture(scope="module")
def champion_workspace(ingested_workspace: Workspace, tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """A copy of the ingested workspace with a two-stage recommender trained, registered and promoted."""
    from training.mlops.registry import promote
    from training.recommend.train import train_recommender

    root = tmp_path_factory.mktemp("one_pipeline")
    shutil.copytree(ingested_workspace.settings.workspace, root / "workspace")
    config = yaml.safe_load(ingested_workspace.config.read_text())
    config["workspace"] = str(root / "workspace")
    config["recommender"] = {**config.get("recommender", {}), "pipeline": "two_stage"}
    config["two_stage"] = TWO_STAGE
    (root / "patron.yaml").write_text(yaml.safe_dump(config))
    ws = Workspace(settings=load_settings(root / "patron.yaml"), config=root / "patron.yaml")
    result = train_recommender(ws.settings)
    promote(ws.settings, "recommender", version=result.model_version, force=True)
    return ws


def test_the_bench_row_and_the_champion_rank_alike(champion_workspace: Workspace) -> None:
    from scipy.sparse import csr_matrix

    from benchmarks.recsys_patron import shipped_scores
    from features.pit import build
    from serving.champions.load import load_recommender_champion
    from training.mlops.metrics import top_k
    from training.recommend.peers import EASE
    from training.recommend.ranker import new_items
    from training.recommend.two_stage import TwoStageRecommender, catalogue, event_history

    settings = champion_workspace.settings
    rec, _ = load_recommender_champion(settings)
    assert isinstance(rec, TwoStageRecommender) and rec.booster is not None
    ease = rec.sources.peers["ease"]
    assert isinstance(ease, EASE) and isinstance(ease.weights, csr_matrix)  # sparse above the item bound
    assert ease.params["l2"] == 50.0 and rec.sources.peers["item_item"].params["K"] == 40

    # the same data, windows, seeds and settings, through the bench's Patron row
    end = build.data_end(settings)
    shape = rec.base.user_items.shape
    history = event_history(settings, rec.base, end)
    browsing = event_history(settings, rec.base, end, settings.two_stage.browsing_events)
    label_start = end - pd.Timedelta(days=settings.recommender.holdout_days)
    earlier, later = history[history["ts"] < label_start], history[history["ts"] >= label_start]
    users = np.unique(history["u"].to_numpy())[::5][:60]
    seen = rec.sources.X[users]
    bench = shipped_scores(
        settings,
        earlier.reset_index(drop=True),
        new_items(earlier, later, shape),
        history,
        users,
        catalogue(settings, rec.item_ids),
        browsing,
        pd.Series(end, index=np.arange(shape[0])),
        label_start,
    )
    k = settings.recommender.k
    bench_top = top_k(bench, seen, k)
    served, _ = rec.recommend_batch(users, seen, N=k)
    assert len(users) == 60 and (served >= 0).all()
    np.testing.assert_array_equal(served, bench_top)
    # and the storefront's answer for a customer, their purchases excluded as the bench excludes them, is that ranking
    for row in (0, 1, 2):
        customer = str(rec.customer_ids[users[row]])
        bought = {str(rec.item_ids[i]) for i in seen[row].indices}
        answer = [item for item, _ in rec.recommend(customer, k, exclude=bought)]
        assert answer == [str(rec.item_ids[i]) for i in served[row]]
