"""Second stage of the two-stage recommender: a LightGBM LambdaRank over the pair features
(training/recommend/ranker_features.py), its training set and rank fusion."""

from __future__ import annotations

from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy.sparse import csr_matrix

from patron.config import SequenceConfig, TwoStageConfig
from training.recommend.candidates import CandidateSources, candidate_recall
from training.recommend.ranker_features import ItemInfo, pair_features

# LambdaRank labels when the items browsed in a label window count too (two_stage.browsing_labels)
PURCHASE_LABEL, BROWSED_LABEL = 2.0, 1.0


def fit_ranker(features: pd.DataFrame, labels: np.ndarray, config: TwoStageConfig) -> lgb.Booster:
    """LambdaRank on (user, candidate) rows grouped by user; early stopping on a held-out share of users."""
    rng = np.random.default_rng(config.seed)
    users = features["user"].unique()
    has_positive = pd.Series(labels).groupby(features["user"].to_numpy()).max()
    users = users[has_positive.reindex(users).to_numpy() > 0]  # groups without a positive teach nothing
    held = set(rng.choice(users, size=max(1, int(len(users) * config.early_stopping_share)), replace=False))
    X = features.drop(columns=["user", "item"])
    sets = []
    in_held = features["user"].isin(held).to_numpy()
    for part in (features["user"].isin(users).to_numpy() & ~in_held, in_held):
        sub = features[part]
        groups = sub.groupby("user", sort=False).size().to_numpy()  # rows are contiguous per user
        sets.append(
            lgb.Dataset(X[part], labels[part], group=groups, categorical_feature=["item_category"], free_raw_data=False)
        )
    params: dict[str, Any] = {
        **config.ranker_params,
        "seed": config.seed,
        "num_threads": config.threads,
        "deterministic": True,
    }
    return lgb.train(
        params,
        sets[0],
        num_boost_round=config.num_boost_round,
        valid_sets=[sets[1]],
        callbacks=[lgb.early_stopping(config.early_stopping_rounds, verbose=False)],
    )


def reciprocal_rank_fusion(features: pd.DataFrame, sources: list[str]) -> np.ndarray:
    """Score without the ranker: the sum over sources of 1 / (60 + rank)."""
    return sum(1.0 / (60.0 + features[f"{s}_rank"].to_numpy()) for s in sources)


def _hold_out_last(history: pd.DataFrame, shape: tuple[int, int]) -> tuple[pd.DataFrame, csr_matrix]:
    """Each customer's last eighth of a history (time-ordered) as labels, the rest as the earlier history."""
    h = history.sort_values(["u", "ts"], kind="stable")
    position = h.groupby("u").cumcount().to_numpy()
    n = np.bincount(h["u"], minlength=shape[0])[h["u"].to_numpy()]
    earlier, later = h[position < n - n // 8], h[position >= n - n // 8]
    return earlier.reset_index(drop=True), new_items(earlier, later, shape)


def new_items(earlier: pd.DataFrame, later: pd.DataFrame, shape: tuple[int, int]) -> csr_matrix:
    """Binary users x items of the (user, item) pairs in `later` that `earlier` does not hold: the ranker's labels."""
    seen = csr_matrix((np.ones(len(earlier), np.float32), (earlier["u"], earlier["i"])), shape=shape)
    held = csr_matrix((np.ones(len(later), np.float32), (later["u"], later["i"])), shape=shape)
    held.data[:] = 1.0
    held.sum_duplicates()
    held.data[:] = 1.0
    held = (held - held.multiply(seen > 0)).tocsr()
    held.eliminate_zeros()
    return held


def browsed_in_window(
    browsing: pd.DataFrame,
    history: pd.DataFrame,
    window_end: pd.Series,
    shape: tuple[int, int],
    window_start: pd.Timestamp | None = None,
) -> csr_matrix:
    """Binary users x items browsed from the day of each customer's last purchase in `history` (or `window_start`,
    if later) to the day of `window_end` (per user code; that day excluded, as `browsing_before` excludes it) and
    not bought in `history`: what the customer engaged with during a label window."""
    start = history.groupby("u")["ts"].max().dt.floor("D").reindex(browsing["u"].to_numpy()).to_numpy()
    if window_start is not None:
        start = np.maximum(start, np.datetime64(pd.Timestamp(window_start), "ns"))  # NaT stays NaT
    end = window_end.dt.floor("D").reindex(browsing["u"].to_numpy()).to_numpy()
    ts = browsing["ts"].to_numpy()
    keep = (ts >= start) & (ts < end)  # NaT on either side compares False
    return new_items(history, browsing[keep], shape)


def ranker_training_set(
    history_train: pd.DataFrame,
    labels_valid: csr_matrix,
    shape: tuple[int, int],
    items: ItemInfo,
    config: TwoStageConfig,
    peer_params: dict[str, dict[str, Any]],
    seed: int,
    sequence: SequenceConfig | None = None,
    browsing: pd.DataFrame | None = None,
    valid_end: pd.Series | None = None,
    valid_start: pd.Timestamp | None = None,
) -> tuple[pd.DataFrame, np.ndarray, float]:
    """Candidate feature rows and labels of every label window (validation, then earlier eighths of the history),
    and the candidate recall of the first window; `browsing` as in `CandidateSources.fit`. With
    `config.browsing_labels` and `valid_end` (per user code, the end of the validation window; `valid_start` its
    start where it is one date for everyone), new items browsed in a window are labelled BROWSED_LABEL and new
    purchases PURCHASE_LABEL (a label window then holds far more of the customer's choices: the same taste draws
    them)."""
    windows = [(history_train, labels_valid)]
    for _ in range(config.label_windows - 1):  # earlier windows: each customer's last eighth of the history
        history, held = _hold_out_last(windows[-1][0], shape)
        windows.append((history, held))
    graded = config.browsing_labels and browsing is not None and valid_end is not None
    parts, labels, recall_v = [], [], float("nan")
    for w, (history, relevant) in enumerate(windows):
        src = CandidateSources(config, peer_params, seed, sequence).fit(history, shape, browsing)
        users = np.flatnonzero(np.diff(relevant.indptr))
        feats, cands, _ = pair_features(src, users, items, src.X[users])
        rel = relevant[users]
        pair = (feats["user"].to_numpy(), feats["item"].to_numpy())
        label = np.asarray(rel[pair]).ravel()
        if graded:  # a window ends where the next later one's history ends
            end = valid_end if w == 0 else windows[w - 1][0].groupby("u")["ts"].max()
            window = browsed_in_window(browsing, history, end, shape, valid_start if w == 0 else None)
            viewed = np.asarray(window[users][pair]).ravel()
            label = np.where(label > 0, PURCHASE_LABEL, np.where(viewed > 0, BROWSED_LABEL, 0.0))
        labels.append(label)
        recall_v = candidate_recall(cands, rel) if w == 0 else recall_v
        parts.append(feats.assign(user=feats["user"] + w * shape[0]))  # one ranking group per user and window
    return pd.concat(parts, ignore_index=True), np.concatenate(labels).astype(np.float32), recall_v
