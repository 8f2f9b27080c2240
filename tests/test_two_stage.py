"""The two-stage recommender: candidate sources, candidate recall, the LambdaRank ranker, no test leakage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.sparse import csr_matrix

from benchmarks.recsys import load_interactions
from patron.config import TwoStageConfig, TwoStageSources
from tests.conftest import Workspace
from tests.test_recsys_bench import _events
from training.mlops.metrics import evaluate
from training.mlops.splits import split_interactions, targets
from training.recommend.candidates import (
    NO_RANK,
    CandidateSources,
    browsing_before,
    candidate_recall,
    complements,
    source_ranks,
    transitions,
)
from training.recommend.item_data import item_info
from training.recommend.ranker import BROWSED_LABEL, PURCHASE_LABEL, browsed_in_window, ranker_training_set
from training.recommend.ranker_features import (
    BROWSING_FEATURES,
    CHOICE_FEATURES,
    ItemInfo,
    item_choice_terms,
    pair_features,
)
from training.tune.two_stage_runs import rank_with_seeds, two_stage, two_stage_rows


def _config(**update: object) -> TwoStageConfig:
    return TwoStageConfig(
        **{
            "candidates_per_source": 50,
            "threads": 1,
            "num_boost_round": 200,
            "ranker_params": {
                "objective": "lambdarank",
                "metric": "ndcg",
                "eval_at": [10],
                "learning_rate": 0.02,
                "num_leaves": 7,
                "min_data_in_leaf": 20,
                "lambda_l2": 10.0,
                "feature_fraction": 0.8,
                "bagging_fraction": 0.8,
                "bagging_freq": 1,
                "verbose": -1,
            },
            **update,
        }
    )


def test_transitions_count_items_bought_soon_after() -> None:
    ts = pd.to_datetime(["2025-01-01", "2025-01-02", "2025-01-03", "2025-01-01", "2025-01-05"])
    history = pd.DataFrame({"u": [0, 0, 0, 1, 1], "i": [0, 1, 2, 2, 0], "ts": ts})
    t = transitions(history, 3, window=1).toarray()
    # pairs within one step: 0->1, 1->2 (customer 0), 2->0 (customer 1); scaled by 1/sqrt(count a * count b)
    assert t[0, 1] == pytest.approx(1 / np.sqrt(2 * 1)) and t[1, 2] == pytest.approx(1 / np.sqrt(1 * 2))
    assert t[2, 0] == pytest.approx(1 / np.sqrt(2 * 2)) and t[0, 2] == 0.0 and t[1, 0] == 0.0
    assert transitions(history, 3, window=2).toarray()[0, 2] == pytest.approx(1 / np.sqrt(2 * 2))


def test_complements_are_the_share_of_buyers_who_buy_the_item_within_the_days() -> None:
    ts = pd.to_datetime(
        ["2025-01-01", "2025-01-05", "2025-01-01", "2025-01-20", "2025-01-01", "2025-01-01", "2025-01-03", "2025-01-04"]
    )
    history = pd.DataFrame({"u": [0, 0, 1, 1, 2, 3, 3, 3], "i": [0, 1, 0, 1, 0, 0, 1, 1], "ts": ts})
    c = complements(history, 2, window=5, days=10).toarray()
    # 4 customers bought item 0; item 1 followed within 10 days for customers 0 and 3 (twice: counted once)
    assert c[0, 1] == pytest.approx(2 / 4) and c[1, 0] == 0.0
    assert complements(history, 2, window=5, days=2).toarray()[0, 1] == pytest.approx(1 / 4)


def test_pending_timing_gives_the_best_recent_anchor_and_its_age() -> None:
    # customer 0 bought item 0 on day 0, item 3 on day 12 and item 1 on day 15 (the last); customer 1 bought item 2
    ts = pd.to_datetime(["2025-01-01", "2025-01-13", "2025-01-16", "2025-01-10"])
    history = pd.DataFrame({"u": [0, 0, 0, 1], "i": [0, 3, 1, 2], "ts": ts})
    src = CandidateSources(
        _config(sources=TwoStageSources(als=False, item_item=False, ease=False, trending=False, popular=False)), {}, 0
    ).fit(history, (2, 6))
    src.complements = csr_matrix(
        np.array(
            [
                [0, 0, 0, 0, 0.9, 0],  # item 0 -> 4: 15 days before the last purchase
                [0, 0, 0, 0, 0.2, 0.3],  # item 1 -> 4 and 5, the day of the last one
                [0, 0, 0, 0, 0, 0.7],
                [0, 0, 0, 0, 0.5, 0.3],  # item 3 -> 4 and 5, 3 days before it
                [0] * 6,
                [0] * 6,
            ],
            dtype=np.float32,
        )
    )
    users, row, item = np.array([0, 1]), np.array([0, 0, 0, 1, 1]), np.array([4, 5, 2, 5, 4])
    best, days_ago = src.pending_timing(users, row, item)
    # item 0 lies outside complement_days (10): its 0.9 never counts; item 5: a tie at 0.3, the fresher anchor wins
    np.testing.assert_allclose(best, [0.5, 0.3, 0.0, 0.7, 0.0])
    np.testing.assert_allclose(days_ago, [3.0, 0.0, np.nan, 0.0, np.nan], equal_nan=True)
    frame, _, _ = pair_features(src, users, ItemInfo.empty(6), src.X[users])
    assert {"complement_best", "complement_days_ago"} <= set(frame.columns)


def _browsing(split, seed: int = 0, n: int = 3000) -> pd.DataFrame:
    """Random views over the whole period: some before, some after each customer's purchases."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "u": rng.integers(0, split.shape[0], n),
            "i": rng.integers(0, split.shape[1], n),
            "ts": pd.Timestamp("2025-01-01") + pd.to_timedelta(rng.integers(0, 60 * 24, n), unit="h"),
        }
    )


def test_browsing_reaches_a_fit_only_before_each_customers_last_purchase_day() -> None:
    split = split_interactions(_events(8, customers=80))
    browsing = _browsing(split)
    history_full = pd.concat([split.train, split.valid], ignore_index=True)
    day = history_full.groupby("u")["ts"].max().dt.floor("D")
    before = browsing["ts"].to_numpy() < day.reindex(browsing["u"].to_numpy()).to_numpy()
    expected = np.zeros(split.shape)
    np.add.at(expected, (browsing["u"][before], browsing["i"][before]), 1)
    np.testing.assert_array_equal(browsing_before(browsing, history_full, split.shape).toarray(), expected)
    # rows on or after that day may be anything: neither the ranker's training rows nor the test scores change
    later = browsing.copy()
    later.loc[~before, "i"] = (later.loc[~before, "i"] + 3) % split.shape[1]
    labels = targets(split, split.valid, split.matrix(split.train))
    test = targets(split, split.test, split.matrix(split.train, split.valid))
    items = ItemInfo(np.arange(split.shape[1]) % 4, np.ones(split.shape[1]))
    config = _config(
        num_boost_round=20,
        early_stopping_rounds=5,
        ranker_params={"objective": "lambdarank", "min_data_in_leaf": 5, "verbose": -1},
    )
    runs = [
        two_stage(split.train, labels, history_full, test, split.shape, items, config, {}, 0, browsing=b)
        for b in (browsing, later)
    ]
    np.testing.assert_array_equal(runs[0].scorer_scores, runs[1].scorer_scores)
    assert set(BROWSING_FEATURES) <= set(runs[0].feature_importance)
    # while browsing before it does count
    earlier = browsing.copy()
    earlier.loc[before, "i"] = (earlier.loc[before, "i"] + 3) % split.shape[1]
    moved = two_stage(split.train, labels, history_full, test, split.shape, items, config, {}, 0, browsing=earlier)
    assert not np.array_equal(runs[0].scorer_scores, moved.scorer_scores)


def test_browsed_in_window_holds_new_items_browsed_between_the_two_days() -> None:
    day = pd.Timestamp("2025-01-01")
    history = pd.DataFrame(
        {"u": [0, 0, 2], "i": [0, 5, 1], "ts": [day, day + pd.Timedelta(days=10, hours=15), day + pd.Timedelta(days=3)]}
    )
    browsing = pd.DataFrame(
        {
            "u": [0, 0, 0, 0, 0, 1, 2],
            "i": [1, 2, 3, 0, 4, 2, 3],
            "ts": [
                day + pd.Timedelta(days=5),  # before the day of 0's last purchase: a feature, not a label
                day + pd.Timedelta(days=10, hours=1),  # that day, before the purchase: a label
                day + pd.Timedelta(days=15),  # inside the window
                day + pd.Timedelta(days=12),  # item 0: bought in the history, not new
                day + pd.Timedelta(days=20, hours=1),  # on the day the window ends: not in it
                day + pd.Timedelta(days=12),  # customer 1 has no purchase: no window
                day + pd.Timedelta(days=25),
            ],
        }
    )  # after customer 2's window
    end = pd.Series([day + pd.Timedelta(days=20, hours=9), day + pd.Timedelta(days=20), day + pd.Timedelta(days=20)])
    got = browsed_in_window(browsing, history, end, (3, 6)).toarray()
    expected = np.zeros((3, 6))
    expected[0, [2, 3]] = 1.0
    np.testing.assert_array_equal(got, expected)
    # a window with a common start (`patron train recommender`'s label window) begins there when it is later
    late = browsed_in_window(browsing, history, end, (3, 6), window_start=day + pd.Timedelta(days=12)).toarray()
    expected[0, 2] = 0.0
    np.testing.assert_array_equal(late, expected)


def test_browsed_new_items_are_ranker_labels_below_purchases() -> None:
    split = split_interactions(_events(8, customers=80))
    browsing = _browsing(split)
    history_full = pd.concat([split.train, split.valid], ignore_index=True)
    labels = targets(split, split.valid, split.matrix(split.train))
    items = ItemInfo(np.arange(split.shape[1]) % 4, np.ones(split.shape[1]))
    end = history_full.groupby("u")["ts"].max()
    graded, y, _ = ranker_training_set(
        split.train, labels, split.shape, items, _config(label_windows=1), {}, 0, browsing=browsing, valid_end=end
    )
    plain, y0, _ = ranker_training_set(
        split.train,
        labels,
        split.shape,
        items,
        _config(label_windows=1, browsing_labels=False),
        {},
        0,
        browsing=browsing,
    )
    pd.testing.assert_frame_equal(graded, plain)  # the same candidate rows: only their labels differ
    assert set(np.unique(y)) == {0.0, BROWSED_LABEL, PURCHASE_LABEL} and set(np.unique(y0)) == {0.0, 1.0}
    np.testing.assert_array_equal(y == PURCHASE_LABEL, y0 == 1.0)
    window = browsed_in_window(browsing, split.train, end, split.shape)[np.flatnonzero(np.diff(labels.indptr))]
    browsed = np.asarray(window[graded["user"].to_numpy(), graded["item"].to_numpy()]).ravel() > 0  # user: row
    np.testing.assert_array_equal(y == BROWSED_LABEL, browsed & (y0 == 0.0))


def test_candidates_exclude_seen_items_and_recall_is_measured() -> None:
    split = split_interactions(_events(5))
    src = CandidateSources(_config(candidates_per_source=5), {}, 0).fit(split.train, split.shape)
    users = np.arange(10)
    seen = src.X[users]
    scores = src.all_scores(users)
    ranks = source_ranks(scores, seen)
    cands = src.candidates(scores, ranks)
    for r, items in enumerate(cands):
        assert not np.isin(items, seen[r].indices).any()
        assert 5 <= len(items) <= 5 * len(src.enabled)
        # the union of each source's 5 best unseen items (ties: lower item first)
        unseen = seen[r].toarray().ravel() == 0
        best = set().union(
            *(np.argsort(-np.where(unseen, s[r], -np.inf), kind="stable")[:5].tolist() for s in scores.values())
        )
        assert set(items.tolist()) == best
    for r in ranks.values():  # seen items at NO_RANK, the others placed 1..n once each
        assert (r[seen.nonzero()] == NO_RANK).all()
        unseen = np.where(seen.toarray() == 0, r, np.nan)
        for row in unseen:
            assert sorted(row[np.isfinite(row)].tolist())[:5] == [1, 2, 3, 4, 5]
    relevant = csr_matrix((np.ones(3), ([0, 0, 1], [int(cands[0][0]), 29, int(cands[1][0])])), shape=(2, 30))
    expected = (1 + int(np.isin(29, cands[0])) + 1) / 3
    assert candidate_recall(cands[:2], relevant) == pytest.approx(expected)


def test_switched_off_sources_are_not_used() -> None:
    split = split_interactions(_events(6))
    sources = TwoStageSources(
        als=False, item_item=False, ease=True, copurchase=False, repeat=False, trending=False, popular=True
    )
    src = CandidateSources(_config(sources=sources), {}, 0).fit(split.train, split.shape)
    assert src.enabled == ["ease", "popular"] and set(src.peers) == {"ease"}
    assert set(src.all_scores(np.arange(3))) == {"ease", "popular"}


def test_test_labels_never_reach_the_scores() -> None:
    split = split_interactions(_events(7, customers=80))
    history_full = pd.concat([split.train, split.valid], ignore_index=True)
    labels = targets(split, split.valid, split.matrix(split.train))
    test = targets(split, split.test, split.matrix(split.train, split.valid))
    # the same customers with other "test" items: if labels leaked, the scores would change
    shuffled = test.copy()
    shuffled.indices = (shuffled.indices + 7) % split.shape[1]
    config = _config(
        num_boost_round=20,
        early_stopping_rounds=5,
        ranker_params={"objective": "lambdarank", "min_data_in_leaf": 5, "verbose": -1},
    )
    runs = [
        two_stage(split.train, labels, history_full, t, split.shape, ItemInfo.empty(split.shape[1]), config, {}, 0)
        for t in (test, shuffled)
    ]
    assert np.array_equal(runs[0].scorer_scores, runs[1].scorer_scores)


def test_ranker_seeds_share_the_rows_and_match_separate_runs() -> None:
    """Ranking the same rows with several ranker seeds gives exactly what a whole run per seed gives."""
    split = split_interactions(_events(7, customers=80))
    history_full = pd.concat([split.train, split.valid], ignore_index=True)
    labels = targets(split, split.valid, split.matrix(split.train))
    test = targets(split, split.test, split.matrix(split.train, split.valid))
    config = _config(
        num_boost_round=20,
        early_stopping_rounds=5,
        ranker_params={"objective": "lambdarank", "min_data_in_leaf": 5, "feature_fraction": 0.5, "verbose": -1},
    )
    args = (split.train, labels, history_full, test, split.shape, ItemInfo.empty(split.shape[1]))
    shared = rank_with_seeds(two_stage_rows(*args, config, {}, 0), config, [5, 6])
    separate = [two_stage(*args, config.model_copy(update={"seed": s}), {}, 0) for s in (5, 6)]
    for one, other in zip(shared, separate):
        np.testing.assert_array_equal(one.scorer_scores, other.scorer_scores)
    assert not np.array_equal(shared[0].scorer_scores, shared[1].scorer_scores)  # the seed changes the ranker
    # without the ranker there is nothing to seed: one result
    assert (
        len(rank_with_seeds(two_stage_rows(*args, config, {}, 0), config.model_copy(update={"ranker": False}), [5, 6]))
        == 1
    )


def test_choice_features_never_read_the_label_window() -> None:
    """The choice-model features of a label window come from the history before it: the same values with other
    label items, and window 0's are those of sources that never saw the label rows (which would change them)."""
    split = split_interactions(_events(3, customers=80))
    rng = np.random.default_rng(0)
    n_items = split.shape[1]
    items = ItemInfo(rng.integers(0, 5, n_items).astype(np.int64), rng.uniform(1.0, 50.0, n_items))
    labels = targets(split, split.valid, split.matrix(split.train))
    other = labels.copy()
    other.indices = (other.indices + 5) % n_items  # the same customers, other label items
    config = _config(label_windows=2)
    runs = [ranker_training_set(split.train, y, split.shape, items, config, {}, 0)[0] for y in (labels, other)]
    cols = list(CHOICE_FEATURES)
    assert runs[0][cols].notna().any().all()
    pd.testing.assert_frame_equal(runs[0], runs[1])
    before = CandidateSources(config, {}, 0).fit(split.train, split.shape)
    users = np.flatnonzero(np.diff(labels.indptr))
    direct, _, _ = pair_features(before, users, items, before.X[users])
    np.testing.assert_array_equal(runs[0][cols].to_numpy()[: len(direct)], direct[cols].to_numpy())
    with_labels = CandidateSources(config, {}, 0).fit(
        pd.concat([split.train, split.valid], ignore_index=True), split.shape
    )
    terms, leaked = item_choice_terms(before, items), item_choice_terms(with_labels, items)
    assert not np.allclose(terms["share"], leaked["share"])
    assert not np.allclose(terms["recent_share"], leaked["recent_share"])


def test_ranker_beats_its_best_single_source(ingested_workspace: Workspace) -> None:
    events, products = load_interactions(ingested_workspace.settings.workspace)
    split = split_interactions(events)
    full = split.matrix(split.train, split.valid)
    test = targets(split, split.test, full)
    labels = targets(split, split.valid, split.matrix(split.train))
    result = two_stage(
        split.train,
        labels,
        pd.concat([split.train, split.valid], ignore_index=True),
        test,
        split.shape,
        item_info(split.items, events, products),
        _config(),
        {},
        42,
    )
    users = np.flatnonzero(np.diff(test.indptr))
    position = pd.Series(np.arange(len(users)), index=users)
    cold = split.train_counts() < 5

    def ndcg(matrix: np.ndarray) -> float:
        return evaluate(lambda u, _h: matrix[position[u].to_numpy()], full, full, test, 10, cold)["ndcg@10"]

    singles = {name: ndcg(m) for name, m in result.source_scores.items()}
    assert len(singles) == 6  # every default source (repeat is off) is measured alone
    assert 0.5 < result.candidate_recall_test <= 1.0
    assert ndcg(result.scorer_scores) > max(singles.values()), singles


def test_rank_fusion_reuses_the_rows_built_for_the_ranker() -> None:
    from patron.config import TwoStageConfig
    from training.tune.two_stage_runs import LastRows

    built = []
    rows = LastRows(lambda config: built.append(config) or object())
    config = TwoStageConfig()
    first = rows(config)
    assert rows(config.model_copy(update={"ranker": False})) is first  # only the ranker switch differs
    assert len(built) == 1
    other = rows(config.model_copy(update={"candidates_per_source": config.candidates_per_source + 1}))
    assert other is not first and len(built) == 2
    assert rows(config) is not first and len(built) == 3  # one configuration kept, the last
