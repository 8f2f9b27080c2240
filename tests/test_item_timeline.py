"""Point-in-time item statistics of the two-stage ranker: hand-computed values, nothing after a customer's moment."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.test_recsys_bench import _events
from tests.test_two_stage import _config
from training.mlops.splits import split_interactions
from training.recommend.candidates import CandidateSources
from training.recommend.item_timeline import AS_OF_FEATURES, ItemTimeline, seconds_of
from training.recommend.ranker_features import ItemInfo, pair_features

CATEGORY = np.array([0, 0, 1])  # items 0 and 1 share a category


def _frame(rows: list[tuple[int, str]]) -> pd.DataFrame:
    return pd.DataFrame({"u": 0, "i": [i for i, _ in rows], "ts": pd.to_datetime([d for _, d in rows])})


PURCHASES = [
    (0, "2025-01-01"),
    (0, "2025-01-10"),
    (2, "2025-01-05"),
    (0, "2025-01-25"),
    (1, "2025-02-01"),
    (0, "2025-03-01"),
]
VIEWS = [(1, "2025-01-20"), (0, "2025-02-15")]
# (item, moment, taste): item 1 is first seen (viewed) on 2025-01-20
PAIRS = [(1, "2025-02-10", 0.5), (0, "2025-02-10", 0.5), (1, "2025-01-15", 0.5), (2, "2025-03-05", 0.2)]


def _features(purchases: list[tuple[int, str]], views: list[tuple[int, str]]) -> dict[str, np.ndarray]:
    timeline = ItemTimeline(_frame(purchases), _frame(views))
    item = np.array([i for i, _, _ in PAIRS])
    moment = seconds_of(pd.to_datetime([m for _, m, _ in PAIRS]))
    return timeline.features(item, moment, CATEGORY, np.array([t for _, _, t in PAIRS]), recent_days=30)


def test_hand_computed_point_in_time_item_statistics() -> None:
    got = _features(PURCHASES, VIEWS)
    assert sorted(got) == sorted(AS_OF_FEATURES)
    # item 1 on 02-10: bought once; its category since 01-20: purchases 01-25 (item 0), 02-01 (item 1) -> 1/2;
    # with views: item 1's view and purchase of 3 events -> 2/3; the last 30 days hold the same three events.
    # item 0 on 02-10: bought 3 times; category since 01-01: 4 purchases -> 3/4, 5 events -> 3/5; last 30 days
    # (from 01-11): its 01-25 purchase of 3 events -> 1/3.
    # item 1 on 01-15: not seen yet -> 0 everywhere (its category's last 30 days: item 0's two purchases).
    # item 2 on 03-05: its only purchase (01-05) of its category's 1 -> 1; nothing in the last 30 days.
    np.testing.assert_allclose(got["item_count_as_of"], np.log1p([1, 3, 0, 1]))
    np.testing.assert_allclose(got["item_share_as_of"], [1 / 2, 3 / 4, 0, 1])
    np.testing.assert_allclose(got["engaged_share_as_of"], [2 / 3, 3 / 5, 0, 1])
    np.testing.assert_allclose(got["item_recent_share_as_of"], [2 / 3, 1 / 3, 0, 0])
    np.testing.assert_allclose(got["generative_as_of"], [0.5 * 2 / 3, 0.5 * 3 / 5, 0, 0.2])
    np.testing.assert_allclose(got["generative_recent_as_of"], [0.5 * 2 / 3, 0.5 / 3, 0, 0])


def test_events_after_the_moment_change_nothing() -> None:
    later = _features(
        PURCHASES + [(0, "2025-03-10"), (1, "2025-03-05"), (2, "2025-03-05")],
        VIEWS + [(1, "2025-02-20"), (2, "2025-03-06")],
    )
    for name, values in _features(PURCHASES, VIEWS).items():
        np.testing.assert_array_equal(later[name], values, err_msg=name)


def test_pair_features_count_each_item_before_the_customers_last_purchase() -> None:
    split = split_interactions(_events(5, customers=60))
    n_items = split.shape[1]
    launched = seconds_of(pd.to_datetime("2025-01-01") + pd.to_timedelta(np.arange(n_items), unit="D"))
    items = ItemInfo(np.arange(n_items) % 3, np.ones(n_items), launched.astype(np.float64))
    sources = CandidateSources(_config(), {}, 0).fit(split.train, split.shape)
    users = np.arange(split.shape[0])
    feats, _, _ = pair_features(sources, users, items, sources.X[users])
    moment = split.train.groupby("u")["ts"].max().reindex(users[feats["user"]]).to_numpy()
    expected = [((split.train["i"] == i) & (split.train["ts"] < t)).sum() for i, t in zip(feats["item"], moment)]
    np.testing.assert_allclose(feats["item_count_as_of"], np.log1p(expected))
    assert np.expm1(feats["item_count_as_of"]).max() > 0
    days = (launched[feats["item"]] - seconds_of(moment)) / 86400
    np.testing.assert_allclose(feats["launched_days_after"], days)
    assert (days > 0).any() and (days < 0).any()


def test_unknown_launch_times_leave_the_feature_empty() -> None:
    split = split_interactions(_events(5, customers=30))
    sources = CandidateSources(_config(), {}, 0).fit(split.train, split.shape)
    items = ItemInfo(np.zeros(split.shape[1], np.int64), np.ones(split.shape[1]))
    feats, _, _ = pair_features(sources, np.arange(5), items, sources.X[:5])
    assert len(feats) and feats["launched_days_after"].isna().all()


@pytest.mark.parametrize("moment", ["2024-12-31", "2025-01-01"])
def test_a_moment_before_any_event_counts_nothing(moment: str) -> None:
    timeline = ItemTimeline(_frame(PURCHASES))
    got = timeline.features(
        np.array([0, 2]), seconds_of(pd.to_datetime([moment] * 2)), CATEGORY, np.ones(2), recent_days=30
    )
    for values in got.values():
        np.testing.assert_array_equal(values, 0.0)


def test_sources_pickled_before_these_features_keep_their_old_columns() -> None:
    """A registered model trained before the point-in-time, price-band and price-choice features still gets the
    columns its booster was trained on."""
    split = split_interactions(_events(5, customers=30))
    sources = CandidateSources(_config(), {}, 0).fit(split.train, split.shape)
    items = ItemInfo(np.arange(split.shape[1]) % 3, np.ones(split.shape[1]))
    new, _, _ = pair_features(sources, np.arange(5), items, sources.X[:5])
    del sources.timeline, sources.moment
    old_config = sources.config.model_copy()
    for name in ("price_bands", "price_choice_levels"):  # as unpickled from a config class without the fields
        old_config.__dict__.pop(name)
    sources.config = old_config
    old, _, _ = pair_features(sources, np.arange(5), items, sources.X[:5])
    added = set(AS_OF_FEATURES) | {
        "launched_days_after",
        "price_band_share",
        "generative_price_band",
        "price_choice_share",
        "generative_price_choice",
        "price_sensitivity",
    }
    assert set(new.columns) - set(old.columns) == added
    pd.testing.assert_frame_equal(old, new[old.columns])
