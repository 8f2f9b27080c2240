"""Recommender behaviour on hand-made interactions: exclusions, allowed items, unknown ids, popularity, files."""

from __future__ import annotations

import pandas as pd
import pytest

from patron.config import RecommenderConfig
from training.recommend.als import ALSRecommender, fit_recommender

CONFIG = RecommenderConfig(factors=4, iterations=10, regularization=0.01, seed=7)


@pytest.fixture(scope="module")
def interactions() -> pd.DataFrame:
    """Two taste groups (items a*, b*) plus one blockbuster everybody touches."""
    rows = []
    for u in range(40):
        group = "a" if u % 2 == 0 else "b"
        rows += [(f"c{u}", f"{group}{j}", 2.0 + (u + j) % 3) for j in range(5) if (u + j) % 5 != 0]
        rows.append((f"c{u}", "hit", 3.0))
    return pd.DataFrame(rows, columns=["customer_id", "item_id", "weight"])


@pytest.fixture(scope="module")
def rec(interactions: pd.DataFrame) -> ALSRecommender:
    return fit_recommender(interactions, CONFIG, personalise={f"c{u}" for u in range(38)})


def test_recommends_from_the_customers_taste_group(rec: ALSRecommender) -> None:
    items = [i for i, _ in rec.recommend("c0", 4, exclude={"hit"})]
    assert len(items) == 4 and all(i.startswith("a") for i in items)
    scores = [s for _, s in rec.recommend("c0", 8)]
    assert scores == sorted(scores, reverse=True)


def test_excluded_items_never_come_back(rec: ALSRecommender) -> None:
    first = [i for i, _ in rec.recommend("c0", 3)]
    again = [i for i, _ in rec.recommend("c0", 3, exclude=set(first))]
    assert not set(first) & set(again) and len(again) == 3
    everything = set(rec.item_ids)
    assert rec.recommend("c0", 5, exclude=everything) == []
    assert len(rec.recommend("c0", 100, exclude={"a1"})) == len(everything) - 1


def test_allowed_restricts_answers(rec: ALSRecommender) -> None:
    allowed = {"b1", "b2", "hit", "not-in-catalogue"}
    got = rec.recommend("c0", 10, allowed=allowed)
    assert {i for i, _ in got} == {"b1", "b2", "hit"}
    assert {i for i, _ in rec.recommend("c0", 10, allowed=allowed, exclude={"hit"})} == {"b1", "b2"}
    assert {i for i, _ in rec.popular(10, allowed=allowed)} == {"b1", "b2", "hit"}
    assert {i for i, _ in rec.similar_items("a1", 10, allowed={"a2", "b3", "a1"})} == {"a2", "b3"}
    assert rec.recommend("c0", 10, allowed={"nope"}) == []


def test_unknown_ids_raise_key_error(rec: ALSRecommender) -> None:
    with pytest.raises(KeyError):
        rec.recommend("stranger", 5)
    with pytest.raises(KeyError):
        rec.similar_items("no-such-item", 5)
    assert not rec.knows_customer("stranger") and not rec.knows_item("no-such-item")


def test_customers_without_consent_get_no_factors_but_count_in_popularity(rec: ALSRecommender) -> None:
    assert rec.knows_customer("c0") and not rec.knows_customer("c39")
    with pytest.raises(KeyError):
        rec.recommend("c39", 3)
    assert rec.popular(1)[0][0] == "hit"  # 40 customers' weights, including c38 and c39


def test_popularity_ordering_and_ties(interactions: pd.DataFrame, rec: ALSRecommender) -> None:
    totals = interactions.groupby("item_id")["weight"].sum()
    expected = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))
    assert rec.popular(len(totals)) == [(i, pytest.approx(w)) for i, w in expected]
    assert [i for i, _ in rec.popular(3, exclude={"hit"})] == [i for i, _ in expected if i != "hit"][:3]


def test_similar_items_leave_the_item_out_and_stay_in_group(rec: ALSRecommender) -> None:
    similar = [i for i, _ in rec.similar_items("a1", 3)]
    assert "a1" not in similar and all(i.startswith("a") for i in similar[:2])


def test_save_and_load_round_trip(rec: ALSRecommender, tmp_path) -> None:
    rec.save(tmp_path / "model")
    assert {p.name for p in (tmp_path / "model").iterdir()} == {"factors.npz", "ids.json"}
    back = ALSRecommender.load(tmp_path / "model")
    assert back.recommend("c3", 5) == rec.recommend("c3", 5)
    assert back.popular(5) == rec.popular(5)


def test_same_seed_same_factors(interactions: pd.DataFrame, rec: ALSRecommender) -> None:
    again = fit_recommender(interactions, CONFIG, personalise={f"c{u}" for u in range(38)})
    assert again.recommend("c5", 5) == rec.recommend("c5", 5)


def test_bad_interactions_name_the_column() -> None:
    with pytest.raises(ValueError, match="weight"):
        fit_recommender(pd.DataFrame({"customer_id": ["c"], "item_id": ["i"]}), CONFIG)
