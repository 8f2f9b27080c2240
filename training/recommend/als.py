"""ALS recommender (implicit) with a popularity fallback, and its fit."""

from __future__ import annotations

import json
import weakref
from pathlib import Path
from tempfile import TemporaryDirectory

import implicit
import numpy as np
import pandas as pd
from implicit.cpu.als import AlternatingLeastSquares as CpuALS
from scipy.sparse import csr_matrix
from threadpoolctl import threadpool_limits

from features.tables.store import atomic_write_bytes, write_json
from patron.config import RecommenderConfig
from training.recommend.base import Explained, Reason, Scored


def factor_model(user_factors: np.ndarray, item_factors: np.ndarray) -> CpuALS:
    """An implicit model object around given factors, so implicit does the scoring and filtering."""
    with threadpool_limits(1, "blas"):  # silences implicit's BLAS-threads check; scoring is not affected
        model = CpuALS(factors=user_factors.shape[1], num_threads=1)
    model.user_factors = np.ascontiguousarray(user_factors, dtype=np.float32)
    model.item_factors = np.ascontiguousarray(item_factors, dtype=np.float32)
    return model


def _valid(ids: np.ndarray, scores: np.ndarray, item_ids: np.ndarray) -> list[Scored]:
    # implicit marks filtered entries with the lowest float32 score; drop them should any reach the answer
    keep = (ids >= 0) & (scores > np.finfo(np.float32).min)
    return [(str(item_ids[i]), float(s)) for i, s in zip(ids[keep], scores[keep])]


class ALSRecommender:
    """Personalised ALS recommendations for known customers, item popularity for everyone else (a `Recommender`)."""

    def __init__(
        self,
        customer_ids: list[str],
        item_ids: list[str],
        user_factors: np.ndarray,
        item_factors: np.ndarray,
        user_items: csr_matrix,
        popularity: np.ndarray,
    ) -> None:
        self.customer_ids = np.asarray(customer_ids, dtype=object)
        self.item_ids = np.asarray(item_ids, dtype=object)
        self.user_items = user_items.tocsr()
        self.popularity = np.asarray(popularity, dtype=np.float64)
        self.model = factor_model(user_factors, item_factors)
        self._user_index = {c: i for i, c in enumerate(customer_ids)}
        self._item_index = {c: i for i, c in enumerate(item_ids)}
        self._item_position = pd.Index(self.item_ids)
        # id(frozenset) -> (weak ref to it, its item mask); an entry leaves when its frozenset dies
        self._masks: dict[int, tuple[weakref.ref, np.ndarray]] = {}
        # popularity order: highest score first, ties broken by item id
        self._popular_order = np.lexsort((self.item_ids.astype(str), -self.popularity))

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_masks": {}}  # weak references do not pickle; masks are rebuilt on use

    # --- queries ---------------------------------------------------------------------------------
    def knows_customer(self, customer_id: str) -> bool:
        """Whether the customer has personalised factors."""
        return customer_id in self._user_index

    def knows_item(self, item_id: str) -> bool:
        """Whether the item is in the catalogue the model was trained on."""
        return item_id in self._item_index

    def customer_index(self, customer_id: str) -> int:
        """The customer's row in the factors and in `user_items` (KeyError when unknown)."""
        return self._user_index[customer_id]

    def _indices(self, ids: set[str] | frozenset[str] | None) -> np.ndarray:
        if isinstance(ids, frozenset):  # large pools from the serving state: cached
            return np.flatnonzero(self.item_mask(ids))
        return np.array(sorted(self._item_index[i] for i in (ids or ()) if i in self._item_index), dtype=np.int64)

    def item_mask(self, ids: set[str] | frozenset[str] | None) -> np.ndarray:
        """Read-only boolean mask over the model's items, True for those in `ids`; kept while a frozenset lives."""
        # The serving state hands out one frozenset per stock snapshot and rules, so the ~20,000-item
        # lookup runs once per snapshot instead of several times per request.
        frozen = isinstance(ids, frozenset)
        if frozen:
            hit = self._masks.get(id(ids))
            if hit is not None and hit[0]() is ids:
                return hit[1]
        mask = np.zeros(len(self.item_ids), dtype=bool)
        if ids:
            position = self._item_position.get_indexer(list(ids))
            mask[position[position >= 0]] = True
        mask.flags.writeable = False
        if frozen:
            key, masks = id(ids), self._masks
            masks[key] = (weakref.ref(ids, lambda _, key=key: masks.pop(key, None)), mask)
        return mask

    def blocked_mask(self, allowed: set[str] | frozenset[str] | None, exclude: set[str] | frozenset[str]) -> np.ndarray:
        """Boolean mask over the model's items, True for those outside `allowed` (none when None) or in `exclude`."""
        blocked = np.zeros(len(self.item_ids), dtype=bool) if allowed is None else ~self.item_mask(allowed)
        blocked[self._indices(exclude)] = True
        return blocked

    def _blocked(
        self, allowed: set[str] | frozenset[str] | None, exclude: set[str] | frozenset[str], *also: int
    ) -> np.ndarray:
        """Sorted indices of the items outside `allowed` (none when None), in `exclude` or among `also`."""
        # implicit scores every item and drops these: cheaper than gathering the allowed items' factors
        blocked = self.blocked_mask(allowed, exclude)
        blocked[list(also)] = True
        return np.flatnonzero(blocked)

    def recommend(
        self,
        customer_id: str,
        k: int,
        exclude: set[str] | frozenset[str] = frozenset(),
        allowed: set[str] | frozenset[str] | None = None,
    ) -> list[Scored]:
        """Top-k items for a known customer (KeyError when unknown), never in `exclude`, only from `allowed`."""
        user = self.customer_index(customer_id)
        row = self.user_items[user]
        blocked = self._blocked(allowed, exclude)
        n = min(k, len(self.item_ids) - len(blocked))  # asking for more than remain pads the answer
        if n <= 0:
            return []
        ids, scores = self.model.recommend(
            user, row, N=n, filter_already_liked_items=False, filter_items=blocked if len(blocked) else None
        )
        return _valid(ids, scores, self.item_ids)[:k]

    def recommend_explained(
        self,
        customer_id: str,
        k: int,
        exclude: set[str] | frozenset[str] = frozenset(),
        allowed: set[str] | frozenset[str] | None = None,
    ) -> list[Explained]:
        """`recommend`'s answer, every item "similar" to what the customer bought without naming which (ALS
        factors blend the whole history; serving names the latest purchase of the item's category)."""
        return [
            (item, score, Reason("similar", None)) for item, score in self.recommend(customer_id, k, exclude, allowed)
        ]

    def recommend_from_history(
        self,
        item_ids: list[str],
        weights: list[float],
        k: int,
        exclude: set[str] | frozenset[str] = frozenset(),
        allowed: set[str] | frozenset[str] | None = None,
        regularization: float | None = None,
        alpha: float | None = None,
    ) -> list[Scored]:
        """Top-k items for a customer known only by live interactions, folded into the factors at request time."""
        cols = [self._item_index[i] for i in item_ids if i in self._item_index]
        vals = [float(w) for i, w in zip(item_ids, weights) if i in self._item_index]
        if not cols:
            return []
        row = csr_matrix(
            (np.asarray(vals, np.float32), (np.zeros(len(cols), np.int64), cols)), shape=(1, len(self.item_ids))
        )
        row.sum_duplicates()
        row.data = np.maximum(row.data, 0.0)  # returns can outweigh interest: no negative confidence
        row.eliminate_zeros()
        if row.nnz == 0:
            return []
        if regularization is not None:  # the training run's values: the model object only holds factors
            self.model.regularization = regularization
        if alpha is not None:
            self.model.alpha = alpha
        blocked = self._blocked(allowed, exclude)
        n = min(k, len(self.item_ids) - len(blocked))
        if n <= 0:
            return []
        ids, scores = self.model.recommend(
            0,
            row,
            N=n,
            filter_already_liked_items=False,
            recalculate_user=True,
            filter_items=blocked if len(blocked) else None,
        )
        return _valid(ids, scores, self.item_ids)[:k]

    def popular(
        self, k: int, exclude: set[str] | frozenset[str] = frozenset(), allowed: set[str] | frozenset[str] | None = None
    ) -> list[Scored]:
        """The k most popular items, never in `exclude`, only from `allowed`."""
        order = self._popular_order
        if allowed is not None:
            order = order[self.item_mask(allowed)[order]]
        order = order[~np.isin(order, self._indices(exclude))][:k]
        return [(str(self.item_ids[i]), float(self.popularity[i])) for i in order]

    def similar_items(
        self,
        item_id: str,
        k: int,
        allowed: set[str] | frozenset[str] | None = None,
        exclude: set[str] | frozenset[str] = frozenset(),
    ) -> list[Scored]:
        """Items whose factors are closest to the item's (KeyError when unknown), the item itself and `exclude`
        left out, only from `allowed`."""
        item = self._item_index[item_id]
        blocked = self._blocked(allowed, exclude, item)
        n = min(k, len(self.item_ids) - len(blocked))
        if n <= 0:
            return []
        ids, scores = self.model.similar_items(item, N=n, filter_items=blocked)
        return _valid(ids, scores, self.item_ids)[:k]

    # --- persistence -----------------------------------------------------------------------------
    def save(self, folder: Path) -> Path:
        """Write the model as factors.npz + ids.json in `folder`."""
        folder.mkdir(parents=True, exist_ok=True)
        with TemporaryDirectory() as tmp:
            np.savez(
                Path(tmp) / "f.npz",
                user_factors=self.model.user_factors,
                item_factors=self.model.item_factors,
                popularity=self.popularity,
                data=self.user_items.data,
                indices=self.user_items.indices,
                indptr=self.user_items.indptr,
                shape=np.array(self.user_items.shape),
            )
            atomic_write_bytes(folder / "factors.npz", (Path(tmp) / "f.npz").read_bytes())
        write_json(
            {"customer_ids": self.customer_ids.tolist(), "item_ids": self.item_ids.tolist()}, folder / "ids.json"
        )
        return folder

    @classmethod
    def load(cls, folder: Path) -> ALSRecommender:
        """Read a model written by `save`."""
        ids = json.loads((Path(folder) / "ids.json").read_text())
        with np.load(Path(folder) / "factors.npz") as z:
            user_items = csr_matrix((z["data"], z["indices"], z["indptr"]), shape=tuple(z["shape"]))
            return cls(
                ids["customer_ids"], ids["item_ids"], z["user_factors"], z["item_factors"], user_items, z["popularity"]
            )


def fit_recommender(
    interactions: pd.DataFrame, config: RecommenderConfig, personalise: set[str] | None = None
) -> ALSRecommender:
    """Fit ALS on [customer_id, item_id, weight] (weights as confidence); popularity from everyone's weights.

    `personalise` limits the customers who get factors (e.g. those who consented); None means all.
    """
    missing = {"customer_id", "item_id", "weight"} - set(interactions.columns)
    if missing:
        raise ValueError(f"interactions: missing column(s) {sorted(missing)}")
    if interactions.empty:
        raise ValueError("interactions: no rows to train on")
    items = pd.Categorical(interactions["item_id"].astype(str))
    popularity = interactions.groupby(items.codes)["weight"].sum().reindex(range(len(items.categories)), fill_value=0.0)
    mine = interactions if personalise is None else interactions[interactions["customer_id"].isin(personalise)]
    users = pd.Categorical(mine["customer_id"].astype(str))
    item_codes = items.codes if personalise is None else items.codes[interactions["customer_id"].isin(personalise)]
    user_items = csr_matrix(
        (mine["weight"].to_numpy(np.float32), (users.codes, item_codes)),
        shape=(len(users.categories), len(items.categories)),
    )
    with threadpool_limits(1, "blas"):  # implicit parallelises itself; nested BLAS threads slow it down
        als = implicit.als.AlternatingLeastSquares(
            factors=config.factors,
            regularization=config.regularization,
            alpha=config.alpha,
            iterations=config.iterations,
            random_state=config.seed,
            use_gpu=config.use_gpu,
            calculate_training_loss=False,
        )
        als.fit(user_items, show_progress=False)
    if config.use_gpu:
        als = als.to_cpu()
    return ALSRecommender(
        list(users.categories),
        list(items.categories),
        als.user_factors,
        als.item_factors,
        user_items,
        popularity.to_numpy(),
    )
