"""EASE above its dense item bound: blockwise, top-k neighbours per item, sparse."""

from __future__ import annotations

import numpy as np
from scipy.sparse import csr_matrix

from training.recommend.peers import make_peer, sparse_ease


def _interactions(seed: int, users: int = 60, items: int = 25) -> csr_matrix:
    rng = np.random.default_rng(seed)
    return csr_matrix((rng.random((users, items)) < 0.25).astype(np.float32))


def test_sparse_ease_with_every_neighbour_is_the_dense_solution() -> None:
    X = _interactions(1)
    dense = make_peer("ease", {"l2": 5.0}, 0).fit(X).weights
    sparse = sparse_ease(X, 5.0, neighbours=X.shape[1], block=7)  # blocks that do not divide the items
    assert isinstance(sparse, csr_matrix)
    assert np.allclose(sparse.toarray(), dense, atol=1e-4)


def test_sparse_ease_keeps_each_items_largest_weights() -> None:
    X = _interactions(2)
    dense = make_peer("ease", {"l2": 5.0}, 0).fit(X).weights
    sparse = sparse_ease(X, 5.0, neighbours=4, block=10).toarray()
    for j in range(X.shape[1]):
        kept = np.flatnonzero(sparse[:, j])
        assert len(kept) == 4 and j not in kept
        assert np.allclose(sparse[kept, j], dense[kept, j], atol=1e-4)
        dropped = np.setdiff1d(np.arange(X.shape[1]), np.append(kept, j))
        assert np.abs(dense[dropped, j]).max() <= np.abs(dense[kept, j]).min() + 1e-5


def test_the_ease_peer_goes_sparse_above_its_item_bound_and_scores_alike() -> None:
    X = _interactions(3)
    params = {"l2": 5.0, "neighbours": X.shape[1], "dense_max_items": X.shape[1]}
    dense = make_peer("ease", params, 0).fit(X)
    sparse = make_peer("ease", params | {"dense_max_items": X.shape[1] - 1}, 0).fit(X)
    assert isinstance(dense.weights, np.ndarray) and isinstance(sparse.weights, csr_matrix)
    users = np.arange(10)
    assert np.allclose(sparse.score(users, X), dense.score(users, X), atol=1e-3)
    bought, items = np.array([0, 3]), np.array([1, 2, 5])
    assert np.allclose(sparse.item_weights(bought, items), dense.item_weights(bought, items), atol=1e-4)
