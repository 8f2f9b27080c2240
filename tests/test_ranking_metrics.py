"""The one ranking-metric module: hand-computed NDCG, MAP, recall, MRR and hit @k, and the same figures as implicit's
`ranking_metrics_at_k` on a fitted model (the definition Patron's holdout metrics had before this module)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from implicit.als import AlternatingLeastSquares
from implicit.evaluation import ranking_metrics_at_k
from scipy.sparse import csr_matrix
from scipy.sparse import random as sparse_random

from training.mlops.metrics import catalogue_coverage, evaluate, metrics_per_user, ranking_metrics


class FixedLists:
    """implicit's `recommend` interface answering fixed lists per user row."""

    def __init__(self, lists: np.ndarray) -> None:
        self.lists = lists

    def recommend(self, userids, user_items, N=10, filter_already_liked_items=True):  # noqa: N803 (implicit's name)
        ids = self.lists[np.asarray(userids)][:, :N]
        return ids, np.zeros(ids.shape, np.float32)


def test_ndcg_and_map_cap_the_ideal_at_k_relevant_items() -> None:
    # row 0: 4 relevant items, hits at ranks 1 and 3; row 1: its one relevant item at rank 2
    top = np.array([[0, 5, 1], [7, 2, 6]])
    relevant = csr_matrix(np.array([[1, 1, 1, 1, 0, 0, 0, 0], [0, 0, 1, 0, 0, 0, 0, 0]], dtype=np.float32))
    m = metrics_per_user(top, relevant, 3)
    idcg3 = 1 + 1 / math.log2(3) + 1 / math.log2(4)  # min(3, 4 relevant) = 3 ideal hits
    assert m["ndcg"][0] == pytest.approx((1 + 1 / math.log2(4)) / idcg3)
    assert m["ndcg"][1] == pytest.approx((1 / math.log2(3)) / 1.0)  # one relevant item: ideal DCG 1
    assert m["map"][0] == pytest.approx((1 / 1 + 2 / 3) / 3)  # precision at each hit / min(3, 4)
    assert m["map"][1] == pytest.approx((1 / 2) / 1)
    assert m["recall"].tolist() == pytest.approx([2 / 4, 1.0])
    assert m["mrr"].tolist() == pytest.approx([1.0, 0.5]) and m["hit"].tolist() == [1.0, 1.0]
    assert catalogue_coverage(np.array([[0, 5, -1], [5, 2, -1]]), 8) == pytest.approx(3 / 8)  # -1: no item


def test_ranking_metrics_of_a_model_average_the_per_user_metrics() -> None:
    lists = np.array([[0, 5, 1], [0, 0, 0], [7, 2, 6]])  # row 1 has no holdout items: not evaluated
    test = csr_matrix(np.array([[1, 1, 1, 1, 0, 0, 0, 0], [0] * 8, [0, 0, 1, 0, 0, 0, 0, 0]], dtype=np.float32))
    got = ranking_metrics(FixedLists(lists), csr_matrix((3, 8), dtype=np.float32), test, 3)
    m = metrics_per_user(lists[[0, 2]], test[[0, 2]], 3)
    assert got["ndcg_at_3"] == pytest.approx(m["ndcg"].mean()) and got["map_at_3"] == pytest.approx(m["map"].mean())
    assert got["recall_at_3"] == pytest.approx(0.75) and got["eval_customers"] == 2.0
    assert got["catalogue_coverage"] == pytest.approx(6 / 8)
    # the full-ranking protocol gives the same figures on the same lists
    scores = np.zeros((3, 8))
    for row, items in enumerate(lists):
        scores[row, items] = [3.0, 2.0, 1.0] if row != 1 else 0.0
    protocol = evaluate(lambda users, _h: scores[users], test, csr_matrix((3, 8)), test, 3, np.zeros(3, bool))
    assert protocol["ndcg@3"] == pytest.approx(got["ndcg_at_3"]) and protocol["map@3"] == pytest.approx(got["map_at_3"])


def test_ranking_metrics_agree_with_implicits_ranking_metrics_at_k() -> None:
    train = sparse_random(600, 120, density=0.05, random_state=1, format="csr", dtype=np.float32)
    train.data[:] = 1.0
    test = sparse_random(600, 120, density=0.02, random_state=2, format="csr", dtype=np.float32)
    test.data[:] = 1.0
    test = (test - test.multiply(train)).tocsr()
    test.eliminate_zeros()
    model = AlternatingLeastSquares(factors=8, iterations=3, random_state=0, num_threads=1)
    model.fit(train, show_progress=False)
    ours = ranking_metrics(model, train, test, 10)
    theirs = ranking_metrics_at_k(model, train, test, K=10, show_progress=False)
    # the same definitions; only the order of the floating-point sums differs
    assert ours["ndcg_at_10"] == pytest.approx(theirs["ndcg"], abs=1e-12)
    assert ours["map_at_10"] == pytest.approx(theirs["map"], abs=1e-12)
    assert ours["ndcg_at_10"] > 0
