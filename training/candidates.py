"""Candidate sources of the two-stage recommender: ALS, item-item, EASE, co-purchase, repeat, trending, popular,
sequence."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.sparse import csr_matrix

from patron.config import SequenceConfig, TwoStageConfig
from training.peers import PEERS, make_peer
from training.recsys_protocol import top_k
from training.sequence import fit_cached, user_sequences

# source -> the peer whose (tuned) params it uses; the other sources are computed here
PEER_SOURCES = {"als": "als", "item_item": "cosine", "ease": "ease"}
SOURCES = ("als", "item_item", "ease", "copurchase", "repeat", "trending", "popular", "sequence")


def _binary(frame: pd.DataFrame, shape: tuple[int, int]) -> csr_matrix:
    m = csr_matrix((np.ones(len(frame), np.float32), (frame["u"].to_numpy(), frame["i"].to_numpy())), shape=shape)
    m.data[:] = 1.0
    return m


def transitions(history: pd.DataFrame, n_items: int, window: int) -> csr_matrix:
    """Item -> item counts of "bought soon after": b within `window` later interactions of the same customer as a."""
    h = history.sort_values(["u", "ts"], kind="stable")
    u, i = h["u"].to_numpy(), h["i"].to_numpy()
    rows, cols = [], []
    for offset in range(1, window + 1):
        same = u[offset:] == u[:-offset]
        rows.append(i[:-offset][same])
        cols.append(i[offset:][same])
    r, c = np.concatenate(rows), np.concatenate(cols)
    keep = r != c
    m = csr_matrix((np.ones(int(keep.sum()), np.float32), (r[keep], c[keep])), shape=(n_items, n_items))
    m.sum_duplicates()
    counts = np.bincount(i, minlength=n_items).astype(np.float32)
    # strength = co-occurrences / sqrt(count(a) * count(b)): popular items do not dominate every row
    scale = 1.0 / np.sqrt(np.maximum(counts, 1.0))
    return csr_matrix(m.multiply(scale[:, None]).multiply(scale[None, :]))


class CandidateSources:
    """Fits every enabled source on a history of events and scores users against every item."""

    def __init__(self, config: TwoStageConfig, peer_params: dict[str, dict[str, Any]], seed: int,
                 sequence: SequenceConfig | None = None) -> None:
        self.config, self.peer_params, self.seed = config, peer_params, seed
        self.sequence_config = sequence or SequenceConfig()

    @property
    def enabled(self) -> list[str]:
        """The sources switched on in config, in a fixed order."""
        return [s for s in SOURCES if getattr(self.config.sources, s)]

    def fit(self, history: pd.DataFrame, shape: tuple[int, int]) -> "CandidateSources":
        """Learn every enabled source from events [u, i, ts] (codes)."""
        cfg = self.config
        self.shape, self.history = shape, history
        self.X = _binary(history, shape)
        self.peers = {s: make_peer(p, self.peer_params.get(p) or PEERS[p].defaults, self.seed, cfg.threads).fit(self.X)
                      for s, p in PEER_SOURCES.items() if s in self.enabled}
        items = history["i"].to_numpy()
        self.popularity = np.bincount(items, minlength=shape[1]).astype(np.float32)
        recent = history["ts"] >= history["ts"].max() - pd.Timedelta(days=cfg.trend_days)
        self.recent_count = np.bincount(items[recent.to_numpy()], minlength=shape[1]).astype(np.float32)
        self.transitions = transitions(history, shape[1], cfg.copurchase_window)
        # each customer's latest interactions, most recent first, for co-purchase and repeat scores
        ordered = history.sort_values(["u", "ts"], kind="stable")
        ordered = ordered.assign(back=ordered.groupby("u").cumcount(ascending=False))
        self.recent = ordered[ordered["back"] < cfg.recent_items].reset_index(drop=True)
        self._recent_rows = self.recent.groupby("u").indices  # user -> its rows in `recent`
        self.counts = csr_matrix((np.ones(len(history), np.float32), (history["u"], history["i"])), shape=shape)
        self.counts.sum_duplicates()
        self.last_ts = history.groupby("u")["ts"].max()
        if "sequence" in self.enabled:
            self.sequences = user_sequences(history, shape[0])
            self.sequence_model = fit_cached(self.sequence_config, self.sequences, shape[1])
        return self

    def _recent_weights(self, users: np.ndarray) -> csr_matrix:
        """Users x items: decay ** (how many interactions ago) for each user's latest items."""
        parts = [(r, self._recent_rows[u]) for r, u in enumerate(users) if u in self._recent_rows]
        at = np.concatenate([p for _, p in parts]) if parts else np.array([], np.int64)
        row = np.repeat([r for r, _ in parts], [len(p) for _, p in parts]).astype(np.int64)
        w = self.config.recency_decay ** self.recent["back"].to_numpy(np.float32)[at]
        m = csr_matrix((w, (row, self.recent["i"].to_numpy()[at])), shape=(len(users), self.shape[1]))
        m.sum_duplicates()
        return m

    def score(self, source: str, users: np.ndarray) -> np.ndarray:
        """Dense scores (len(users) x n_items) of one source."""
        if source in self.peers:
            return self.peers[source].score(users, self.X)
        if source == "copurchase":
            return np.asarray((self._recent_weights(users) @ self.transitions).todense(), dtype=np.float32)
        if source == "repeat":
            return np.asarray(self.counts[users].todense(), dtype=np.float32)
        if source == "trending":
            trend = self.recent_count / np.maximum(self.popularity, 1.0) * np.log1p(self.recent_count)
            return np.tile(trend, (len(users), 1))
        if source == "popular":
            return np.tile(self.popularity, (len(users), 1))
        if source == "sequence":
            return self.sequence_model.score_all([self.sequences[u] for u in users])
        raise KeyError(f"unknown or disabled source {source!r}")

    def all_scores(self, users: np.ndarray) -> dict[str, np.ndarray]:
        """Every enabled source's dense scores for the users."""
        return {s: self.score(s, users) for s in self.enabled}

    def candidates(self, scores: dict[str, np.ndarray], seen: csr_matrix) -> list[np.ndarray]:
        """Per user, the union of each source's top-N unseen items (N = candidates_per_source)."""
        n = self.config.candidates_per_source
        unseen = seen.toarray() == 0
        tops = []
        for name, s in scores.items():
            top = top_k(s, seen, n)
            value = np.take_along_axis(s, top, axis=1)
            ok = np.take_along_axis(unseen, top, axis=1) & np.isfinite(value)
            if name == "repeat":  # the customer's own items: only those the protocol does not exclude
                ok &= value > 0
            tops.append(np.where(ok, top, -1))
        union = np.concatenate(tops, axis=1)
        return [np.unique(row[row >= 0]) for row in union]


def candidate_recall(candidates: list[np.ndarray], relevant: csr_matrix) -> float:
    """Share of relevant items (over users with any) that the candidate sets contain."""
    found, total = 0, 0
    for r, cands in enumerate(candidates):
        items = relevant.indices[relevant.indptr[r]:relevant.indptr[r + 1]]
        found += int(np.isin(items, cands).sum())
        total += len(items)
    return found / total if total else float("nan")
