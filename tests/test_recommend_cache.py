"""The candidate-pool cache: one frozenset per stock snapshot and rules, one item mask per pool; answers unchanged."""

from __future__ import annotations

import gc
import pickle

import numpy as np
import pandas as pd
import pytest

from patron.config import DEFAULT_CONFIG, RecommenderConfig, RulesConfig, Settings, load_settings
from serving.answers import recommendations
from serving.answers.rules import candidates
from serving.online.sqlite_store import SqliteStore
from serving.online.state import OnlineState
from training.recommend.als import ALSRecommender, fit_recommender

CONFIG = RecommenderConfig(factors=8, iterations=10, regularization=0.01, seed=3)
ITEMS = [f"i{j:03d}" for j in range(120)]
CATEGORY = {item: f"cat{j % 4}" for j, item in enumerate(ITEMS)}


@pytest.fixture(scope="module")
def rec() -> ALSRecommender:
    rng = np.random.default_rng(5)
    rows = [
        (f"c{u}", ITEMS[j], float(rng.integers(1, 4)))
        for u in range(60)
        for j in rng.choice(len(ITEMS), 12, replace=False)
    ]
    return fit_recommender(pd.DataFrame(rows, columns=["customer_id", "item_id", "weight"]), CONFIG)


@pytest.fixture()
def state(tmp_path) -> OnlineState:
    store = SqliteStore(tmp_path / "online.db")
    yield OnlineState(
        in_stock=frozenset(ITEMS[:100]),
        category_of=dict(CATEGORY),
        name_of={i: i for i in ITEMS},
        purchased={"c1": ["i003", "i010"]},
        refused_personalization=frozenset(),
        features=pd.DataFrame({"customer_id": []}),
        store=store,
    )
    store.close()


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> Settings:
    return load_settings(DEFAULT_CONFIG, workspace=str(tmp_path_factory.mktemp("ws")))


def brute_force(rec: ALSRecommender, customer: str, k: int, allowed: set[str], exclude: set[str]) -> list[str]:
    """Top-k by the dot product of the factors over allowed - exclude, without the recommender's index code."""
    scores = rec.model.item_factors @ rec.model.user_factors[rec.customer_index(customer)]
    pool = [i for i, item in enumerate(rec.item_ids) if item in allowed and item not in exclude]
    return [rec.item_ids[i] for i in sorted(pool, key=lambda i: -scores[i])[:k]]


def every_answer(rec: ALSRecommender, allowed: set[str] | frozenset[str], exclude: set[str]) -> list:
    """Personal, live-history, popular and similar-item answers for the same candidates."""
    out = [rec.recommend(f"c{u}", 15, exclude=exclude, allowed=allowed) for u in range(0, 60, 7)]
    out.append(
        rec.recommend_from_history(["i001", "i002", "i050"], [1.0, 3.0, 2.0], 15, exclude=exclude, allowed=allowed)
    )
    out.append(rec.popular(15, exclude=exclude, allowed=allowed))
    out += [rec.similar_items(item, 15, allowed=allowed, exclude=exclude) for item in ("i001", "i042", "i119")]
    return out


def test_cached_pool_answers_equal_uncached_and_brute_force(rec: ALSRecommender, state: OnlineState) -> None:
    pool, applied = candidates(RulesConfig(), state, None)
    exclude = {"i004", "i017", "i099"}
    assert isinstance(pool, frozenset) and applied == ["in_stock_only"]
    cached = every_answer(rec, pool, exclude)
    assert every_answer(rec, pool, exclude) == cached  # mask taken from the cache the second time
    assert every_answer(rec, set(pool), exclude) == cached  # a plain set is never cached
    for u, answer in zip(range(0, 60, 7), cached):
        assert [item for item, _ in answer] == brute_force(rec, f"c{u}", 15, set(pool), exclude)
    assert all(item in pool and item not in exclude for answer in cached for item, _ in answer)


def test_same_stock_and_rules_give_the_same_pool_object(rec: ALSRecommender, state: OnlineState) -> None:
    first, _ = candidates(RulesConfig(), state, ["cat1"])
    again, _ = candidates(RulesConfig(), state, ["cat1"])
    assert first is again and first == {i for i in ITEMS[:100] if CATEGORY[i] == "cat1"}
    assert rec.item_mask(first) is rec.item_mask(again)


def test_stock_change_invalidates_pool_and_mask(rec: ALSRecommender, state: OnlineState) -> None:
    before, _ = candidates(RulesConfig(), state, None)
    top = rec.recommend("c5", 1, allowed=before)[0][0]
    state.store.set_stock({top: False, "i110": True})  # through the online store, as POST /items/stock does
    after, _ = candidates(RulesConfig(), state, None)
    assert after is not before and top not in after and "i110" in after
    assert top not in [item for item, _ in rec.recommend("c5", 10, allowed=after)]
    assert every_answer(rec, after, set()) == every_answer(rec, set(after), set())
    assert state.allowed_items() == after


def test_rule_change_gives_a_new_pool(rec: ALSRecommender, state: OnlineState) -> None:
    plain, _ = candidates(RulesConfig(), state, None)
    narrowed, applied = candidates(
        RulesConfig(exclude_categories=["cat0"], include_categories=["cat0", "cat2"]), state, None
    )
    assert applied == ["in_stock_only", "include_categories", "exclude_categories"]
    assert narrowed == {i for i in ITEMS[:100] if CATEGORY[i] == "cat2"}
    everything, applied = candidates(RulesConfig(in_stock_only=False), state, None)
    assert applied == [] and everything == set(ITEMS)
    for pool in (narrowed, everything):
        assert every_answer(rec, pool, {"i002"}) == every_answer(rec, set(pool), {"i002"})
    assert candidates(RulesConfig(), state, None)[0] == plain


def test_masks_leave_with_their_pool(rec: ALSRecommender) -> None:
    pool = frozenset(ITEMS[10:30])
    mask = rec.item_mask(pool)
    assert not mask.flags.writeable and int(mask.sum()) == 20 and id(pool) in rec._masks
    copy = pickle.loads(pickle.dumps(rec))  # weak references do not pickle: the copy starts without masks
    assert copy._masks == {} and copy.popular(5, allowed=pool) == rec.popular(5, allowed=pool)
    key = id(pool)
    del pool
    gc.collect()
    assert key not in rec._masks


def test_service_answers_equal_uncached(rec: ALSRecommender, state: OnlineState, settings: Settings) -> None:
    """recommendations.recommend end to end (context, exclusions, rules) with the cache and with plain sets."""
    rules = RulesConfig(max_per_category=3)

    def answer(uncached: bool) -> list:
        if uncached:  # every pool a fresh plain set: nothing can come from a cache
            state.item_pool = lambda *a, **kw: set(OnlineState.item_pool(state, *a, **kw))
        try:
            return [
                recommendations.recommend(rec, state, c, 8, True, cats, ctx, rules, settings).items
                for c, cats, ctx in (("c1", None, ["i007"]), ("c2", ["cat3"], None), ("new", None, ["i020"]))
            ]
        finally:
            state.__dict__.pop("item_pool", None)

    assert answer(False) == answer(True)
