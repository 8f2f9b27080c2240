"""A two-stage recommender champion: trained by `patron train recommender`, served, with reasons naming its source."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator

import numpy as np
import pytest
import yaml

from patron.config import load_settings
from tests.conftest import Server, Workspace, purchases, start_patron_server, stop_server

# Small (trains in seconds on the test data), with every source on: the PyTorch sequence model included, so the
# champion serves it from the registry's artifacts as a candidate source and as ranking features.
TWO_STAGE = {"label_windows": 1, "candidates_per_source": 60, "sources": {"repeat": True, "sequence": True}}
SEQUENCE = {"dim": 16, "epochs": 3, "max_len": 10, "negatives": 0, "threads": 1}
REASON = re.compile(
    r"^(similar to (?P<similar>.+) you bought|often bought with (?P<with>.+)|time to restock|"
    r"popular in (?P<category>.+))$"
)


@pytest.fixture(scope="module")
def two_stage_workspace(trained_workspace: Workspace, tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """A copy of the trained workspace whose recommender champion is a two-stage pipeline."""
    from training.mlops.registry import promote
    from training.recommend.train import train_recommender

    root = tmp_path_factory.mktemp("two_stage")
    shutil.copytree(trained_workspace.settings.workspace, root / "workspace")
    config = yaml.safe_load(trained_workspace.config.read_text())
    config["workspace"] = str(root / "workspace")
    config["recommender"] = {**config.get("recommender", {}), "pipeline": "two_stage"}
    config["two_stage"] = TWO_STAGE
    config["sequence"] = SEQUENCE
    (root / "patron.yaml").write_text(yaml.safe_dump(config))
    ws = Workspace(settings=load_settings(root / "patron.yaml"), config=root / "patron.yaml")
    result = train_recommender(ws.settings)
    promote(ws.settings, "recommender", version=result.model_version, force=True)
    return ws


@pytest.fixture(scope="module")
def two_stage_server(two_stage_workspace: Workspace, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    proc, server = start_patron_server(two_stage_workspace, tmp_path_factory.mktemp("ts_server") / "server.log")
    yield server
    stop_server(proc)


def test_champion_loads_as_two_stage_and_fast_features_match_training(two_stage_workspace: Workspace) -> None:
    from serving.champions.load import load_recommender_champion
    from training.recommend.item_timeline import AS_OF_FEATURES
    from training.recommend.ranker_features import BROWSING_FEATURES, customer_features, pair_features
    from training.recommend.sequence import SequenceRecommender
    from training.recommend.two_stage import TwoStageRecommender

    rec, _ = load_recommender_champion(two_stage_workspace.settings)
    assert isinstance(rec, TwoStageRecommender) and rec.booster is not None
    assert isinstance(rec.sources.sequence_model, SequenceRecommender)  # unpickled from the registered version
    assert {"sequence_score", "sequence_rank", "repeat_rank"} <= set(rec.booster.feature_name())
    for user in list(rec._rows)[:5]:  # the serving path computes exactly the features the ranker was trained on
        seen = rec.sources.X[[user]]
        frame, _, _ = pair_features(rec.sources, np.array([user]), rec.items, seen)
        rows = rec._rows[user]
        X, cands, names = customer_features(
            rec.sources, user, rec._bought[rows], rec._bought_ts[rows], rec.items, seen.toarray()[0] > 0
        )
        assert names == list(frame.columns[:-2]) == rec.booster.feature_name()
        assert set(BROWSING_FEATURES) | {"pending_complement"} <= set(names)  # the workspace has views and carts
        # point-in-time item shares, the catalogue's launch dates and the price bands reach the served features
        assert set(AS_OF_FEATURES) | {
            "launched_days_after",
            "price_band_share",
            "generative_price_band",
            "price_choice_share",
            "price_sensitivity",
        } <= set(names)
        assert np.isfinite(X[:, names.index("launched_days_after")]).all()
        np.testing.assert_array_equal(cands, frame["item"].to_numpy())
        np.testing.assert_allclose(
            X, frame.drop(columns=["user", "item"]).to_numpy(np.float64), rtol=1e-6, equal_nan=True
        )


@pytest.mark.integration
def test_two_stage_champion_answers_with_reasons_and_rules(
    two_stage_server: Server, two_stage_workspace: Workspace
) -> None:
    from features.tables.store import read_table
    from serving.champions.load import load_recommender_champion

    settings = two_stage_workspace.settings
    rec, version = load_recommender_champion(settings)
    products = read_table(settings.tables_dir, "products").astype({"item_id": str})
    name_of = dict(zip(products["item_id"], products["name"]))
    category_of = dict(zip(products["item_id"], products["category"]))
    in_stock = set(products.loc[products["in_stock"], "item_id"])
    bought = purchases(settings).astype(str).groupby("customer_id")["item_id"].apply(set)
    customers = [c for c in bought.sort_values(key=lambda s: -s.map(len)).index if rec.knows_customer(c)][:15]
    kinds = set()
    with two_stage_server.client(timeout=30) as client:
        for customer in customers:
            r = client.post("/recommend", json={"customer_id": customer, "k": 10})
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["model_version"] == version and body["source"] == "personal" and not body["fallback"]
            items = [i["item_id"] for i in body["items"]]
            assert len(items) == 10 and len(set(items)) == 10
            rebuys = {i["item_id"] for i in body["items"] if i["reason"] == "time to restock"}
            assert not (set(items) - rebuys) & bought[customer], "a purchased item was recommended"
            assert set(items) <= in_stock, "an out-of-stock item was recommended"
            mine = {name_of[i] for i in bought[customer]}
            for item in body["items"]:
                m = REASON.match(item["reason"])
                assert m, item["reason"]
                kinds.add(item["reason"].split(" ")[0])
                for anchor in (m["similar"], m["with"]):
                    assert anchor is None or anchor in mine, f"{item['reason']!r} names an item not bought"
                assert m["category"] is None or m["category"] == category_of[item["item_id"]]
    assert {"similar", "often"} <= kinds  # the item sources and the co-purchase source both show
