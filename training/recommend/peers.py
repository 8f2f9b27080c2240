"""The standard recommender peers (popularity, implicit ALS/BPR/item-kNN, EASE) behind one fit/score interface."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
from implicit.als import AlternatingLeastSquares
from implicit.bpr import BayesianPersonalizedRanking
from implicit.nearest_neighbours import BM25Recommender, CosineRecommender
from implicit.utils import ParameterWarning
from scipy.linalg import cho_factor, cho_solve
from scipy.sparse import csr_matrix
from threadpoolctl import threadpool_limits


class Peer:
    """A recommender fitted on a binary user x item matrix that scores users against every item."""

    name = "peer"

    def __init__(self, params: dict[str, Any], seed: int, threads: int = 1) -> None:
        self.params, self.seed, self.threads = dict(params), seed, threads

    def fit(self, X: csr_matrix) -> Peer:
        """Learn from the user x item matrix X."""
        raise NotImplementedError

    def score(self, users: np.ndarray, X: csr_matrix) -> np.ndarray:
        """Dense scores (len(users) x n_items) of the given users, their history read from X."""
        raise NotImplementedError

    def item_weights(self, bought: np.ndarray, items: np.ndarray) -> np.ndarray:
        """bought x items: how much having each bought item adds to each item's score (for answer reasons)."""
        raise NotImplementedError


class Popularity(Peer):
    """Most popular items: how many users interacted with each item."""

    name = "popularity"

    def fit(self, X: csr_matrix) -> Popularity:
        self.counts = np.asarray((X > 0).sum(axis=0)).ravel().astype(np.float32)
        return self

    def score(self, users: np.ndarray, X: csr_matrix) -> np.ndarray:
        return np.tile(self.counts, (len(users), 1))


class _Factors(Peer):
    """Matrix factorisation from implicit: scores are user factors times item factors."""

    def _model(self) -> Any:
        raise NotImplementedError

    def fit(self, X: csr_matrix) -> _Factors:
        with threadpool_limits(1, "blas"):  # implicit parallelises itself; nested BLAS threads slow it down
            model = self._model()
            model.fit(csr_matrix(X, dtype=np.float32), show_progress=False)
        self.user_factors, self.item_factors = np.asarray(model.user_factors), np.asarray(model.item_factors)
        return self

    def score(self, users: np.ndarray, X: csr_matrix) -> np.ndarray:
        return self.user_factors[users] @ self.item_factors.T

    def item_weights(self, bought: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Closeness of the item factors (a factor model has no item-to-item weights of its own)."""
        return self.item_factors[bought] @ self.item_factors[items].T


class ALS(_Factors):
    """implicit's alternating least squares (Hu, Koren, Volinsky) with confidence 1 + alpha * r."""

    name = "als"

    def _model(self) -> AlternatingLeastSquares:
        p = self.params
        return AlternatingLeastSquares(
            factors=int(p["factors"]),
            regularization=p["regularization"],
            alpha=p["alpha"],
            iterations=int(p["iterations"]),
            random_state=self.seed,
            num_threads=self.threads,
            calculate_training_loss=False,
        )


class BPR(_Factors):
    """implicit's Bayesian personalised ranking."""

    name = "bpr"

    def _model(self) -> BayesianPersonalizedRanking:
        p = self.params
        return BayesianPersonalizedRanking(
            factors=int(p["factors"]),
            learning_rate=p["learning_rate"],
            regularization=p["regularization"],
            iterations=int(p["iterations"]),
            random_state=self.seed,
            num_threads=self.threads,
        )


class _ItemKNN(Peer):
    """implicit's item-item neighbourhood models: scores are the user's items times the item similarity."""

    def _model(self) -> Any:
        raise NotImplementedError

    def fit(self, X: csr_matrix) -> _ItemKNN:
        model = self._model()
        with warnings.catch_warnings():  # implicit converts its own internal COO matrix and warns about it
            warnings.simplefilter("ignore", ParameterWarning)
            model.fit(csr_matrix(X, dtype=np.float32), show_progress=False)
        self.similarity = model.similarity.tocsr()
        return self

    def score(self, users: np.ndarray, X: csr_matrix) -> np.ndarray:
        return np.asarray((X[users] @ self.similarity).todense(), dtype=np.float32)

    def item_weights(self, bought: np.ndarray, items: np.ndarray) -> np.ndarray:
        return self.similarity[bought].toarray()[:, items]


class Cosine(_ItemKNN):
    """Item-item cosine similarity, K nearest neighbours kept per item."""

    name = "cosine"

    def _model(self) -> CosineRecommender:
        return CosineRecommender(K=int(self.params["K"]), num_threads=self.threads)


class BM25(_ItemKNN):
    """Item-item similarity on BM25-weighted interactions."""

    name = "bm25"

    def _model(self) -> BM25Recommender:
        p = self.params
        return BM25Recommender(K=int(p["K"]), K1=p["K1"], B=p["B"], num_threads=self.threads)


class EASE(Peer):
    """EASE (Steck 2019): closed-form item-item regression with a zero diagonal.

    Up to `dense_max_items` items (param, default: always dense) the weights are one dense items x items matrix.
    Above it they are computed a block of target items at a time from one Cholesky factor of the Gram matrix, and
    each target item keeps only its `neighbours` (param) largest weights by magnitude: a sparse matrix, so a model
    of a large catalogue scores and serves in memory linear in the items."""

    name = "ease"

    def fit(self, X: csr_matrix) -> EASE:
        n = X.shape[1]
        if n <= self.params.get("dense_max_items", n):
            gram = (X.T @ X).toarray().astype(np.float64)
            gram[np.diag_indices_from(gram)] += self.params["l2"]
            inverse = np.linalg.inv(gram)
            self.weights = (-inverse / np.diag(inverse)).astype(np.float32)
            np.fill_diagonal(self.weights, 0.0)
        else:
            self.weights = sparse_ease(X, self.params["l2"], int(self.params["neighbours"]))
        return self

    def score(self, users: np.ndarray, X: csr_matrix) -> np.ndarray:
        if isinstance(self.weights, csr_matrix):
            return np.asarray((X[users] @ self.weights).todense(), dtype=np.float32)
        return np.asarray(X[users] @ self.weights, dtype=np.float32)

    def item_weights(self, bought: np.ndarray, items: np.ndarray) -> np.ndarray:
        if isinstance(self.weights, csr_matrix):
            return self.weights[bought][:, items].toarray()
        return self.weights[np.ix_(bought, items)]


def sparse_ease(X: csr_matrix, l2: float, neighbours: int, block: int = 1024) -> csr_matrix:
    """EASE's weights with each column (target item) cut to its `neighbours` largest magnitudes: the inverse of the
    regularised Gram matrix solved `block` columns at a time from its Cholesky factor (float32), never held whole."""
    n = X.shape[1]
    gram = (X.T @ X).astype(np.float32).toarray()
    gram[np.diag_indices(n)] += l2
    factor = cho_factor(gram, lower=True, overwrite_a=True, check_finite=False)
    keep = max(1, min(neighbours, n - 1))
    rows, cols, vals = [], [], []
    for start in range(0, n, block):
        width = min(block, n - start)
        own = (np.arange(start, start + width), np.arange(width))
        unit = np.zeros((n, width), np.float32)
        unit[own] = 1.0
        inverse = cho_solve(factor, unit, check_finite=False)  # columns start.. of the inverse
        weights = -inverse / inverse[own]
        weights[own] = 0.0
        top = np.argpartition(-np.abs(weights), keep - 1, axis=0)[:keep]
        rows.append(top.T.ravel())
        cols.append(np.repeat(np.arange(start, start + width), keep))
        vals.append(np.take_along_axis(weights, top, axis=0).T.ravel())
    out = csr_matrix(
        (np.concatenate(vals).astype(np.float32), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)
    )
    out.eliminate_zeros()
    return out


@dataclass(frozen=True)
class PeerSpec:
    """A peer class and its Optuna search space (a function of a trial returning params)."""

    cls: type[Peer]
    space: Callable[[optuna.Trial], dict[str, Any]]
    space_text: dict[str, str] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)  # used where a peer runs untuned (a two-stage source)


PEERS: dict[str, PeerSpec] = {
    "popularity": PeerSpec(Popularity, lambda t: {}, {}),
    "als": PeerSpec(
        ALS,
        lambda t: {
            "factors": t.suggest_int("factors", 16, 256, log=True),
            "regularization": t.suggest_float("regularization", 1e-3, 10.0, log=True),
            "alpha": t.suggest_float("alpha", 0.1, 50.0, log=True),
            "iterations": t.suggest_int("iterations", 5, 40),
        },
        {
            "factors": "int 16..256 log",
            "regularization": "1e-3..10 log",
            "alpha": "0.1..50 log",
            "iterations": "int 5..40",
        },
        {"factors": 64, "regularization": 0.05, "alpha": 2.0, "iterations": 20},
    ),
    "bpr": PeerSpec(
        BPR,
        lambda t: {
            "factors": t.suggest_int("factors", 16, 256, log=True),
            "learning_rate": t.suggest_float("learning_rate", 1e-3, 0.2, log=True),
            "regularization": t.suggest_float("regularization", 1e-5, 0.1, log=True),
            "iterations": t.suggest_int("iterations", 20, 400, log=True),
        },
        {
            "factors": "int 16..256 log",
            "learning_rate": "1e-3..0.2 log",
            "regularization": "1e-5..0.1 log",
            "iterations": "int 20..400 log",
        },
        {"factors": 64, "learning_rate": 0.01, "regularization": 0.01, "iterations": 100},
    ),
    "cosine": PeerSpec(
        Cosine, lambda t: {"K": t.suggest_int("K", 5, 1000, log=True)}, {"K": "int 5..1000 log"}, {"K": 100}
    ),
    "bm25": PeerSpec(
        BM25,
        lambda t: {
            "K": t.suggest_int("K", 5, 1000, log=True),
            "K1": t.suggest_float("K1", 0.1, 3.0),
            "B": t.suggest_float("B", 0.0, 1.0),
        },
        {"K": "int 5..1000 log", "K1": "0.1..3", "B": "0..1"},
        {"K": 100, "K1": 1.2, "B": 0.75},
    ),
    "ease": PeerSpec(
        EASE, lambda t: {"l2": t.suggest_float("l2", 1.0, 10_000.0, log=True)}, {"l2": "1..1e4 log"}, {"l2": 200.0}
    ),
}


def make_peer(name: str, params: dict[str, Any], seed: int, threads: int = 1) -> Peer:
    """A peer by name with the given params (KeyError naming the choices when unknown)."""
    if name not in PEERS:
        raise KeyError(f"unknown peer {name!r}; choose one of {', '.join(PEERS)}")
    return PEERS[name].cls(params, seed, threads)
