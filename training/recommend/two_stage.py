"""The two-stage recommender as a servable model: candidate sources + LambdaRank ranker over the ALS recommender,
with the source (and the bought item) that put each answer item forward."""

from __future__ import annotations

import json
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy.sparse import csr_matrix

from features.tables.store import atomic_write_bytes, read_table, write_json
from patron.config import SequenceConfig, Settings, TwoStageConfig
from training.mlops.metrics import top_k
from training.recommend.als import ALSRecommender
from training.recommend.base import ALS_ARTIFACT, TWO_STAGE_ARTIFACT, TWO_STAGE_META, Explained, Reason, Scored
from training.recommend.candidates import CandidateSources
from training.recommend.item_data import event_codes, item_info, read_products
from training.recommend.ranker import fit_ranker, new_items, ranker_training_set, reciprocal_rank_fusion
from training.recommend.ranker_features import ItemInfo, customer_features, pair_features

SOURCES_FILE, RANKER_FILE = "sources.pkl", "ranker.txt"
FEATURES_VERSION = 2  # 2: browsing and pending-complement features; a model of another version is not loaded
# why a source puts an item forward: "similar" to a bought item, "bought_with" a recent one, "restock", "popular"
REASON_KIND = {
    "als": "similar",
    "item_item": "similar",
    "ease": "similar",
    "sequence": "similar",
    "copurchase": "bought_with",
    "repeat": "restock",
    "trending": "popular",
    "popular": "popular",
}


def event_history(
    settings: Settings, rec: ALSRecommender, cutoff: pd.Timestamp, types: Sequence[str] = ("purchase",)
) -> pd.DataFrame:
    """Events of the given types before the cutoff as codes [u, i, ts] of the ALS recommender's customers and
    items."""
    return event_codes(settings.tables_dir, types, rec.customer_ids, rec.item_ids, before=cutoff)


def catalogue(settings: Settings, item_ids: np.ndarray) -> ItemInfo:
    """Category, mean purchase price and launch time of the recommender's items."""
    events = read_table(settings.tables_dir, "events", columns=["item_id", "type", "unit_price"])
    return item_info(list(item_ids), events[events["type"] == "purchase"], read_products(settings.tables_dir))


def source_peer_params(settings: Settings) -> dict[str, dict[str, Any]]:
    """The peer sources' params: `two_stage.peers` (as a tuning chose them), else the ALS source takes the
    recommender section's ALS settings and the other peers their defaults."""
    r = settings.recommender
    als = {"factors": r.factors, "regularization": r.regularization, "alpha": r.alpha, "iterations": r.iterations}
    return {"als": als} | settings.two_stage.peers


def fit_two_stage(settings: Settings, rec: ALSRecommender, cutoff: pd.Timestamp) -> TwoStageRecommender:
    """Ranker trained on the `recommender.holdout_days` before the cutoff (sources fit before them), then the
    sources refit on every purchase before the cutoff; `rec` (fit before the cutoff) answers everything else."""
    cfg, shape = settings.two_stage, rec.user_items.shape
    history = event_history(settings, rec, cutoff)
    browsing = event_history(settings, rec, cutoff, cfg.browsing_events) if cfg.browsing_events else None
    label_start = cutoff - pd.Timedelta(days=settings.recommender.holdout_days)
    earlier, later = history[history["ts"] < label_start], history[history["ts"] >= label_start]
    pipeline = fit_pipeline(
        earlier.reset_index(drop=True),
        new_items(earlier, later, shape),
        history,
        shape,
        catalogue(settings, rec.item_ids),
        cfg,
        source_peer_params(settings),
        settings.sequence,
        browsing,
        pd.Series(cutoff, index=np.arange(shape[0])),  # the label window is [label_start, cutoff)
        label_start,
    )
    return TwoStageRecommender(rec, pipeline.sources, pipeline.booster, pipeline.items)


@dataclass
class TwoStagePipeline:
    """The fitted pipeline: candidate sources, the ranker (None: rank fusion of the sources) and the catalogue."""

    sources: CandidateSources
    booster: lgb.Booster | None
    items: ItemInfo

    def scores(self, users: np.ndarray, seen: csr_matrix) -> np.ndarray:
        """Dense scores (len(users) x items; -inf outside each user's candidates), `seen` (rows of `users`)
        never among the candidates."""
        feats, _, _ = pair_features(self.sources, users, self.items, seen)
        values = (
            self.booster.predict(
                feats.drop(columns=["user", "item"]), num_iteration=self.booster.best_iteration or None
            )
            if self.booster is not None
            else reciprocal_rank_fusion(feats, self.sources.enabled)
        )
        dense = np.full((len(users), self.sources.shape[1]), -np.inf)
        dense[feats["user"].to_numpy(), feats["item"].to_numpy()] = values
        return dense


def fit_pipeline(
    history_train: pd.DataFrame,
    labels: csr_matrix,
    history_full: pd.DataFrame,
    shape: tuple[int, int],
    items: ItemInfo,
    config: TwoStageConfig,
    peer_params: dict[str, dict[str, Any]],
    sequence: SequenceConfig | None = None,
    browsing: pd.DataFrame | None = None,
    window_end: pd.Series | None = None,
    window_start: pd.Timestamp | None = None,
) -> TwoStagePipeline:
    """The two-stage pipeline, as `patron train recommender` ships it and `patron bench recsys` measures it: the
    ranker (seed `config.seed`) trained on `labels` over candidates of sources fit on `history_train` (label windows
    ending at `window_end` per user code, starting at `window_start`), then the sources refit on `history_full`."""
    booster = None
    if config.ranker:
        feats, y, _ = ranker_training_set(
            history_train,
            labels,
            shape,
            items,
            config,
            peer_params,
            config.seed,
            sequence,
            browsing,
            window_end,
            window_start,
        )
        booster = fit_ranker(feats, y, config)
    sources = CandidateSources(config, peer_params, config.seed, sequence).fit(history_full, shape, browsing)
    return TwoStagePipeline(sources, booster, items)


class TwoStageRecommender:
    """Candidates from several sources ranked by LightGBM for customers with purchases; the ALS recommender for
    popularity, similar items, live histories and customers without purchases (a `Recommender`)."""

    def __init__(
        self, base: ALSRecommender, sources: CandidateSources, booster: lgb.Booster | None, items: ItemInfo
    ) -> None:
        self.base, self.sources, self.booster, self.items = base, sources, booster, items
        self.customer_ids, self.item_ids = base.customer_ids, base.item_ids
        history = sources.history.sort_values(["u", "ts"], ascending=[True, False], kind="stable")
        self._rows = history.groupby("u").indices  # user code -> its rows, latest purchase first
        self._bought, self._bought_ts = history["i"].to_numpy(), history["ts"].to_numpy()

    # --- the ALS recommender's answers ---------------------------------------------------------
    def knows_customer(self, customer_id: str) -> bool:
        """Whether the customer has personalised recommendations."""
        return self.base.knows_customer(customer_id)

    def knows_item(self, item_id: str) -> bool:
        """Whether the item is in the catalogue the model was trained on."""
        return self.base.knows_item(item_id)

    def popular(
        self, k: int, exclude: set[str] | frozenset[str] = frozenset(), allowed: set[str] | frozenset[str] | None = None
    ) -> list[Scored]:
        """The k most popular items (the ALS recommender's popularity)."""
        return self.base.popular(k, exclude=exclude, allowed=allowed)

    def similar_items(
        self,
        item_id: str,
        k: int,
        allowed: set[str] | frozenset[str] | None = None,
        exclude: set[str] | frozenset[str] = frozenset(),
    ) -> list[Scored]:
        """Items closest to the item (the ALS recommender's item factors)."""
        return self.base.similar_items(item_id, k, allowed=allowed, exclude=exclude)

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
        """Live histories are folded into the ALS factors (see ALSRecommender.recommend_from_history)."""
        return self.base.recommend_from_history(
            item_ids, weights, k, exclude=exclude, allowed=allowed, regularization=regularization, alpha=alpha
        )

    # --- two-stage answers -----------------------------------------------------------------------
    def recommend_explained(
        self,
        customer_id: str,
        k: int,
        exclude: set[str] | frozenset[str] = frozenset(),
        allowed: set[str] | frozenset[str] | None = None,
    ) -> list[Explained]:
        """Top-k (item, score, reason: its kind and the bought item behind it or None) for a known customer
        (KeyError when unknown); the ALS answer, reason "similar", for a customer without purchases."""
        user = self.base.customer_index(customer_id)
        if user not in self._rows:
            return self.base.recommend_explained(customer_id, k, exclude, allowed)
        rows = self._rows[user]
        bought, bought_ts = self._bought[rows], self._bought_ts[rows]
        X, cands, names = customer_features(
            self.sources, user, bought, bought_ts, self.items, self.base.blocked_mask(allowed, exclude)
        )
        if not len(cands):
            return []
        enabled = self.sources.enabled
        ranks = X[:, [names.index(f"{s}_rank") for s in enabled]]
        values = (
            self.booster.predict(X, num_iteration=self.booster.best_iteration or None, num_threads=1)
            if self.booster is not None
            else (1.0 / (60.0 + ranks)).sum(axis=1)
        )
        top = np.argsort(-values, kind="stable")[:k]
        best = [enabled[j] for j in ranks[top].argmin(axis=1)]
        anchors = self._anchors(best, pd.unique(bought), cands[top])
        return [
            (str(self.item_ids[cands[r]]), float(values[r]), Reason(REASON_KIND[src], anchor))
            for r, src, anchor in zip(top, best, anchors)
        ]

    def recommend(
        self,
        customer_id: str,
        k: int,
        exclude: set[str] | frozenset[str] = frozenset(),
        allowed: set[str] | frozenset[str] | None = None,
    ) -> list[Scored]:
        """Top-k items for a known customer (KeyError when unknown), never in `exclude`, only from `allowed`."""
        return [(i, s) for i, s, _ in self.recommend_explained(customer_id, k, exclude, allowed)]

    def _strength(self, source: str, bought: np.ndarray, items: np.ndarray) -> np.ndarray:
        """bought x items: how much each bought item adds to each item's score in the source."""
        if REASON_KIND[source] == "bought_with":
            return self.sources.transitions[bought].toarray()[:, items]  # dense rows: few bought, one item axis
        if source in self.sources.peers:
            return self.sources.peers[source].item_weights(bought, items)
        factors = self.base.model.item_factors  # the sequence model: closeness of the ALS item factors
        return factors[bought] @ factors[items].T

    def _anchors(self, sources: list[str], bought: np.ndarray, items: np.ndarray) -> list[str | None]:
        """Per item, the bought item (latest first on ties, never the item itself) that contributes most to its
        score in the source that put it forward; None for restock and popularity reasons."""
        out: list[str | None] = [None] * len(items)
        for source in set(sources):
            if REASON_KIND[source] not in ("similar", "bought_with"):
                continue
            mine = np.flatnonzero(np.array(sources) == source)
            pool = bought[: self.sources.config.recent_items] if REASON_KIND[source] == "bought_with" else bought
            if not len(pool):
                continue
            strength = self._strength(source, pool, items[mine]).astype(np.float64)
            strength[pool[:, None] == items[mine][None, :]] = -np.inf
            for j, best, found in zip(mine, strength.argmax(axis=0), np.isfinite(strength).any(axis=0)):
                if found:
                    out[j] = str(self.item_ids[pool[best]])
        return out

    # --- offline evaluation ----------------------------------------------------------------------
    def recommend_batch(
        self,
        userids: np.ndarray,
        user_items: csr_matrix,
        N: int = 10,
        filter_already_liked_items: bool = True,
        **_: Any,
    ) -> tuple[np.ndarray, np.ndarray]:
        """implicit's `recommend` interface (rows of the ALS user index), for `training.mlops.metrics`."""
        users = np.atleast_1d(np.asarray(userids))
        seen = user_items if filter_already_liked_items else csr_matrix(user_items.shape, dtype=np.float32)
        dense = TwoStagePipeline(self.sources, self.booster, self.items).scores(users, seen)
        ids = top_k(np.where(np.isfinite(dense), dense, -1e30), seen, N)
        scores = np.take_along_axis(dense, ids, axis=1)
        found = np.isfinite(scores)  # implicit's evaluation reads int32 ids and float32 scores
        return np.where(found, ids, -1).astype(np.int32), np.where(found, scores, -np.inf).astype(np.float32)

    # --- persistence -----------------------------------------------------------------------------
    def save(self, folder: Path) -> Path:
        """Write the ALS recommender to folder/recommender and the two-stage parts to folder/two_stage."""
        self.base.save(folder / ALS_ARTIFACT)
        own = folder / TWO_STAGE_ARTIFACT
        own.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(
            own / SOURCES_FILE,
            pickle.dumps({"sources": self.sources, "items": self.items}, protocol=pickle.HIGHEST_PROTOCOL),
        )
        if self.booster is not None:
            atomic_write_bytes(own / RANKER_FILE, self.booster.model_to_string().encode())
        write_json(
            {
                "features_version": FEATURES_VERSION,
                "sources": self.sources.enabled,
                "ranker": self.booster is not None,
                "features": self.booster.feature_name() if self.booster is not None else [],
            },
            own / TWO_STAGE_META,
        )
        return folder

    @classmethod
    def load(cls, folder: Path) -> TwoStageRecommender:
        """Read a model written by `save` (the folder holding recommender/ and two_stage/)."""
        own = Path(folder) / TWO_STAGE_ARTIFACT
        written = json.loads((own / TWO_STAGE_META).read_text()).get("features_version", 1)
        if written != FEATURES_VERSION:
            raise ValueError(
                f"two-stage model in {folder} has features version {written}, this Patron computes "
                f"version {FEATURES_VERSION}: retrain it (patron train recommender)"
            )
        parts = pickle.loads((own / SOURCES_FILE).read_bytes())
        booster = lgb.Booster(model_file=str(own / RANKER_FILE)) if (own / RANKER_FILE).exists() else None
        return cls(ALSRecommender.load(Path(folder) / ALS_ARTIFACT), parts["sources"], booster, parts["items"])
