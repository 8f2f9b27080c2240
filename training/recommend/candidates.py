"""Candidate sources of the two-stage recommender: ALS, item-item, EASE, co-purchase, repeat, trending, popular,
sequence."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.sparse import csr_matrix

from patron.config import SequenceConfig, TwoStageConfig
from training.recommend.item_timeline import ItemTimeline, seconds_of
from training.recommend.peers import PEERS, make_peer
from training.recommend.sequence import fit_cached, user_sequences

# source -> the peer whose (tuned) params it uses; the other sources are computed here
PEER_SOURCES = {"als": "als", "item_item": "cosine", "ease": "ease"}
SOURCES = ("als", "item_item", "ease", "copurchase", "repeat", "trending", "popular", "sequence")
NO_RANK = 1e6  # rank given to items a source cannot reach (seen items); LightGBM handles the gap


def _binary(frame: pd.DataFrame, shape: tuple[int, int]) -> csr_matrix:
    m = csr_matrix((np.ones(len(frame), np.float32), (frame["u"].to_numpy(), frame["i"].to_numpy())), shape=shape)
    m.data[:] = 1.0
    return m


def follow_counts(history: pd.DataFrame, n_items: int, window: int, days: int | None = None) -> csr_matrix:
    """Item -> item counts of "bought soon after": b within `window` later interactions of the same customer as a
    (and, with `days`, within that many days of it); each customer's (a, b) pair counts once with `days`."""
    h = history.sort_values(["u", "ts"], kind="stable")
    u, i = h["u"].to_numpy(), h["i"].to_numpy()
    day = h["ts"].to_numpy().astype("datetime64[D]").astype(np.int64)
    rows, cols, who = [], [], []
    for offset in range(1, window + 1):
        same = u[offset:] == u[:-offset]
        if days is not None:
            same &= (day[offset:] - day[:-offset]) <= days
        rows.append(i[:-offset][same])
        cols.append(i[offset:][same])
        who.append(u[offset:][same])
    r, c, w = np.concatenate(rows), np.concatenate(cols), np.concatenate(who)
    keep = r != c
    r, c, w = r[keep], c[keep], w[keep]
    if days is not None:  # each customer's (a, b) pair once
        pairs = pd.DataFrame({"w": w, "r": r, "c": c}).drop_duplicates()
        r, c = pairs["r"].to_numpy(), pairs["c"].to_numpy()
    m = csr_matrix((np.ones(len(r), np.float32), (r, c)), shape=(n_items, n_items))
    m.sum_duplicates()
    return m


def transitions(history: pd.DataFrame, n_items: int, window: int) -> csr_matrix:
    """Co-purchase strength of "bought soon after" (`follow_counts`) over sqrt(count(a) * count(b)), so popular items
    do not dominate every row."""
    counts = np.bincount(history["i"].to_numpy(), minlength=n_items).astype(np.float32)
    scale = 1.0 / np.sqrt(np.maximum(counts, 1.0))
    return csr_matrix(follow_counts(history, n_items, window).multiply(scale[:, None]).multiply(scale[None, :]))


def complements(history: pd.DataFrame, n_items: int, window: int, days: int) -> csr_matrix:
    """P(b is bought within `days` after a | a customer buys a): the share of a's buyers who bought b that soon."""
    buyers = history[["u", "i"]].drop_duplicates()["i"].to_numpy()
    counts = np.bincount(buyers, minlength=n_items).astype(np.float32)
    return csr_matrix(follow_counts(history, n_items, window, days).multiply(1.0 / np.maximum(counts, 1.0)[:, None]))


def browsing_rows_before(browsing: pd.DataFrame, history: pd.DataFrame) -> pd.DataFrame:
    """The browsing events dated before the day of each customer's last purchase in `history` (none for customers
    without one), so a label window that starts after the history never shows through."""
    limit = history.groupby("u")["ts"].max().dt.floor("D").reindex(browsing["u"].to_numpy()).to_numpy()
    return browsing[browsing["ts"].to_numpy() < limit]  # NaT (no history) compares False


def browsing_before(browsing: pd.DataFrame, history: pd.DataFrame, shape: tuple[int, int]) -> csr_matrix:
    """Users x items counts of `browsing_rows_before`."""
    return _counts(browsing_rows_before(browsing, history), shape)


def _counts(kept: pd.DataFrame, shape: tuple[int, int]) -> csr_matrix:
    m = csr_matrix((np.ones(len(kept), np.float32), (kept["u"].to_numpy(), kept["i"].to_numpy())), shape=shape)
    m.sum_duplicates()
    return m


def with_browsing(X: csr_matrix, browsed: csr_matrix, weight: float) -> csr_matrix:
    """Purchases (1 each) plus every browsed item at `weight`: what the peer sources learn from."""
    return csr_matrix(X + weight * (browsed > 0).astype(np.float32)) if weight > 0 else X


class CandidateSources:
    """Fits every enabled source on a history of events and scores users against every item."""

    def __init__(
        self,
        config: TwoStageConfig,
        peer_params: dict[str, dict[str, Any]],
        seed: int,
        sequence: SequenceConfig | None = None,
    ) -> None:
        self.config, self.peer_params, self.seed = config, peer_params, seed
        self.sequence_config = sequence or SequenceConfig()

    def source_params(self, source: str) -> dict[str, Any]:
        """A peer source's params: the given (tuned) ones or the peer's defaults; EASE with its sparsity bound."""
        peer = PEER_SOURCES[source]
        params = dict(self.peer_params.get(peer) or PEERS[peer].defaults)
        if source == "ease":
            params |= {"dense_max_items": self.config.ease_dense_max_items, "neighbours": self.config.ease_neighbours}
        return params

    @property
    def enabled(self) -> list[str]:
        """The sources switched on in config, in a fixed order."""
        return [s for s in SOURCES if getattr(self.config.sources, s)]

    def fit(
        self, history: pd.DataFrame, shape: tuple[int, int], browsing: pd.DataFrame | None = None
    ) -> CandidateSources:
        """Learn every enabled source from purchases [u, i, ts] (codes); `browsing` (views, carts: [u, i, ts]) feeds
        the ranker's browsing features, each customer's only up to the day of their last purchase in `history`."""
        cfg = self.config
        self.shape, self.history = shape, history
        self.X = _binary(history, shape)
        self.has_browsing = browsing is not None and len(browsing) > 0
        kept = browsing_rows_before(browsing, history) if self.has_browsing else None
        self.browsed = _counts(kept, shape) if kept is not None else csr_matrix(shape)
        self.timeline = ItemTimeline(history, kept)
        self.browse_popularity = np.asarray(self.browsed.sum(axis=0), dtype=np.float64).ravel()
        self.peer_X = with_browsing(self.X, self.browsed, cfg.browsing_weight if self.has_browsing else 0.0)
        self.peers = {
            s: make_peer(p, self.source_params(s), self.seed, cfg.threads).fit(self.peer_X)
            for s, p in PEER_SOURCES.items()
            if s in self.enabled
        }
        items = history["i"].to_numpy()
        self.popularity = np.bincount(items, minlength=shape[1]).astype(np.float32)
        recent = history["ts"] >= history["ts"].max() - pd.Timedelta(days=cfg.trend_days)
        self.recent_count = np.bincount(items[recent.to_numpy()], minlength=shape[1]).astype(np.float32)
        self.transitions = transitions(history, shape[1], cfg.copurchase_window)
        self.complements = complements(history, shape[1], cfg.recent_items, cfg.complement_days)
        # each customer's latest interactions, most recent first, for co-purchase and repeat scores
        ordered = history.sort_values(["u", "ts"], kind="stable")
        ordered = ordered.assign(back=ordered.groupby("u").cumcount(ascending=False))
        self.recent = ordered[ordered["back"] < cfg.recent_items].reset_index(drop=True)
        self._recent_rows = self.recent.groupby("u").indices  # user -> its rows in `recent`
        self.counts = csr_matrix((np.ones(len(history), np.float32), (history["u"], history["i"])), shape=shape)
        self.counts.sum_duplicates()
        self.last_ts = history.groupby("u")["ts"].max()
        # the ranker's point in time of each customer, in seconds (the history's end for customers without one)
        self.moment = seconds_of(self.last_ts.reindex(np.arange(shape[0])).fillna(history["ts"].max()))
        latest = history[
            history["ts"]
            >= (self.last_ts - pd.Timedelta(days=cfg.complement_days)).reindex(history["u"].to_numpy()).to_numpy()
        ]
        self.latest_bought = _binary(latest, shape)  # each customer's purchases of their last complement_days
        self.latest_rows = (
            latest[["u", "i"]]
            .assign(  # and how many days before their last purchase each was made,
                days_ago=(self.last_ts.reindex(latest["u"].to_numpy()).to_numpy() - latest["ts"].to_numpy())
                / np.timedelta64(1, "D")
            )
            .sort_values(["u", "days_ago"], kind="stable")
            .reset_index(drop=True)
        )  # freshest
        self.latest_start = np.concatenate([[0], np.cumsum(np.bincount(self.latest_rows["u"], minlength=shape[0]))])
        if "sequence" in self.enabled:
            self.sequences = user_sequences(history, shape[0])
            self.sequence_model = fit_cached(self.sequence_config, self.sequences, shape[1])
        return self

    def _recent_weights(self, users: np.ndarray) -> csr_matrix:
        """Users x items: decay ** (how many interactions ago) for each user's latest items."""
        parts = [(r, self._recent_rows[u]) for r, u in enumerate(users) if u in self._recent_rows]
        at = np.concatenate([p for _, p in parts]) if parts else np.array([], np.int64)
        row = np.repeat([r for r, _ in parts], [len(p) for _, p in parts]).astype(np.int64)
        w = self.config.recency_decay ** self.recent["back"].to_numpy()[at].astype(np.float32)
        m = csr_matrix((w, (row, self.recent["i"].to_numpy()[at])), shape=(len(users), self.shape[1]))
        m.sum_duplicates()
        return m

    def pending(self, users: np.ndarray, row: np.ndarray, item: np.ndarray) -> np.ndarray:
        """Per pair (users[row], item): the summed chance that the item follows one of the customer's latest
        purchases (`complements` from each purchase of their last `complement_days`)."""
        chance = csr_matrix(self.latest_bought[users] @ self.complements)
        return np.asarray(chance[row, item], dtype=np.float64).ravel()

    def pending_timing(self, users: np.ndarray, row: np.ndarray, item: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per pair (users[row], item): the largest chance that the item follows one of the customer's purchases of
        the last `complement_days` (`complements`), and how many days before the customer's last purchase that
        purchase was (NaN where none reaches the item): an accessory is bought within days of its main item or not
        at all, so an old anchor's complement is less likely still to come."""
        first = self.latest_start[users]  # each customer's rows of `latest_rows`, freshest first
        n_anchors = self.latest_start[users + 1] - first
        anchor_item = self.latest_rows["i"].to_numpy()
        anchor_days = self.latest_rows["days_ago"].to_numpy(np.float64)
        best, days_ago = np.zeros(len(row)), np.full(len(row), np.nan)
        for j in range(int(n_anchors.max(initial=0))):  # each customer's j-th freshest anchor against their pairs
            pairs = np.flatnonzero(n_anchors[row] > j)
            at_j = first[row[pairs]] + j
            chance = np.asarray(self.complements[anchor_item[at_j], item[pairs]], dtype=np.float64).ravel()
            better = chance > best[pairs]  # strictly: a tie keeps the fresher anchor
            best[pairs[better]] = chance[better]
            days_ago[pairs[better]] = anchor_days[at_j[better]]
        return best, days_ago

    def score(self, source: str, users: np.ndarray) -> np.ndarray:
        """Dense scores (len(users) x n_items) of one source."""
        if source in self.peers:
            return self.peers[source].score(users, self.peer_X)
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

    def candidates(self, scores: dict[str, np.ndarray], ranks: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Per user, the union of each source's top-N unseen items (N = candidates_per_source; `ranks` from
        `source_ranks`, so seen items never qualify)."""
        n = self.config.candidates_per_source
        picked = np.zeros(next(iter(scores.values())).shape, dtype=bool) if scores else np.zeros((0, 0), bool)
        for name, s in scores.items():
            ok = (ranks[name] <= n) & np.isfinite(s)
            if name == "repeat":  # the customer's own items: only those the protocol does not exclude
                ok &= s > 0
            picked |= ok
        return [np.flatnonzero(row) for row in picked]


def source_ranks(scores: dict[str, np.ndarray], seen: csr_matrix) -> dict[str, np.ndarray]:
    """Per source, the 1-based place of every item in each row's full ranking (ties: the lower item first), seen
    items at NO_RANK."""
    rows, cols = seen.nonzero()
    out = {}
    for name, values in scores.items():
        s = np.array(values, dtype=np.float64, copy=True)
        s[rows, cols] = -np.inf
        order = np.argsort(-s, axis=1, kind="stable")
        ranks = np.empty(s.shape, dtype=np.float32)
        np.put_along_axis(ranks, order, np.arange(1, s.shape[1] + 1, dtype=np.float32)[None, :], axis=1)
        ranks[rows, cols] = NO_RANK
        out[name] = ranks
    return out


def candidate_recall(candidates: list[np.ndarray], relevant: csr_matrix) -> float:
    """Share of relevant items (over users with any) that the candidate sets contain."""
    found, total = 0, 0
    for r, cands in enumerate(candidates):
        items = relevant.indices[relevant.indptr[r] : relevant.indptr[r + 1]]
        found += int(np.isin(items, cands).sum())
        total += len(items)
    return found / total if total else float("nan")
