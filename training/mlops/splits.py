"""The RecBole "TO, RS 8:1:1" protocol: per-customer time-ordered split, full ranking, metrics @k."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
from scipy.sparse import csr_matrix

Scorer = Callable[[np.ndarray, csr_matrix], np.ndarray]  # (users, history matrix) -> dense scores
METRICS = ("recall", "ndcg", "mrr", "hit")


def split_sizes(n: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train/validation/test counts per customer as RecBole's split_by_ratio([0.8, 0.1, 0.1]) computes them."""
    n = np.asarray(n, dtype=np.int64)
    valid, test = n // 10, n // 10
    train = n - valid - test
    for part in (test, valid):  # RecBole gives a small customer one row per split, last split first
        bump = (n < 10) & (train > 1)
        part += bump
        train -= bump
    return train, valid, test


@dataclass
class Split:
    """Interactions split per customer in time: ids, event frames (codes u, i, ts) and binary matrices."""

    customers: np.ndarray
    items: np.ndarray
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.customers), len(self.items)

    def matrix(self, *frames: pd.DataFrame) -> csr_matrix:
        """Binary user x item matrix of the union of the given event frames."""
        df = pd.concat(frames, ignore_index=True)
        m = csr_matrix((np.ones(len(df), np.float32), (df["u"].to_numpy(), df["i"].to_numpy())), shape=self.shape)
        m.data[:] = 1.0
        m.sum_duplicates()
        m.data[:] = 1.0
        return m

    def train_counts(self) -> np.ndarray:
        """Training interactions per customer."""
        return np.bincount(self.train["u"].to_numpy(), minlength=self.shape[0])


def split_interactions(events: pd.DataFrame) -> Split:
    """Per customer, interactions ordered by time: earliest 80% train, next 10% validation, last 10% test."""
    missing = {"customer_id", "item_id", "ts"} - set(events.columns)
    if missing:
        raise ValueError(f"events: missing column(s) {sorted(missing)}")
    if events.empty:
        raise ValueError("events: no interactions to split")
    df = events[["customer_id", "item_id", "ts"]].astype({"customer_id": str, "item_id": str})
    # Ties in time keep the rows' order (the source file's), as RecBole's stable sort on time does.
    df = df.assign(row=np.arange(len(df))).sort_values(["customer_id", "ts", "row"], ignore_index=True)
    users, items = pd.Categorical(df["customer_id"]), pd.Categorical(df["item_id"])
    frame = pd.DataFrame({"u": users.codes.astype(np.int64), "i": items.codes.astype(np.int64), "ts": df["ts"]})
    position = frame.groupby("u").cumcount().to_numpy()
    n = np.bincount(frame["u"], minlength=len(users.categories))
    train, valid, _ = split_sizes(n)
    cut1, cut2 = train[frame["u"]], (train + valid)[frame["u"]]
    return Split(np.asarray(users.categories, dtype=object), np.asarray(items.categories, dtype=object),
                 frame[position < cut1].reset_index(drop=True),
                 frame[(position >= cut1) & (position < cut2)].reset_index(drop=True),
                 frame[position >= cut2].reset_index(drop=True))


def targets(split: Split, frame: pd.DataFrame, seen: csr_matrix) -> csr_matrix:
    """Binary matrix of the frame's items that the customer has not already seen."""
    m = split.matrix(frame)
    return (m - m.multiply(seen)).tocsr()


def top_k(scores: np.ndarray, seen: csr_matrix, k: int) -> np.ndarray:
    """Indices of the k best items per row, seen items excluded, ties broken by the lower item index."""
    scores = np.array(scores, dtype=np.float64, copy=True)
    rows, cols = seen.nonzero()
    scores[rows, cols] = -np.inf
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.lexsort((part, -np.take_along_axis(scores, part, axis=1)), axis=1)
    return np.take_along_axis(part, order, axis=1)


def metrics_per_user(top: np.ndarray, relevant: csr_matrix, k: int) -> dict[str, np.ndarray]:
    """Recall, NDCG, MRR and hit @k per row as RecBole defines them (rows need at least one relevant item)."""
    hits = np.zeros(top.shape, dtype=bool)
    for r in range(top.shape[0]):
        hits[r] = np.isin(top[r], relevant.indices[relevant.indptr[r]:relevant.indptr[r + 1]])
    n_rel = np.diff(relevant.indptr).astype(np.float64)
    discounts = 1.0 / np.log2(np.arange(2, top.shape[1] + 2))
    ideal = np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))[np.minimum(n_rel, k).astype(int) - 1]
    first = np.where(hits.any(axis=1), hits.argmax(axis=1) + 1, np.inf)
    return {"recall": hits.sum(axis=1) / n_rel, "ndcg": (hits * discounts).sum(axis=1) / ideal,
            "mrr": 1.0 / first, "hit": hits.any(axis=1).astype(np.float64)}


def evaluate(scorer: Scorer, history: csr_matrix, seen: csr_matrix, relevant: csr_matrix, k: int,
             cold: np.ndarray, batch: int = 1024) -> dict[str, float]:
    """Metrics @k over customers with relevant items (and their cold slice), plus item coverage of the lists."""
    users = np.flatnonzero(np.diff(relevant.indptr))
    if len(users) == 0:
        raise ValueError("no evaluation customers: no unseen items in the evaluated period")
    per_user: dict[str, list[np.ndarray]] = {m: [] for m in METRICS}
    shown = set()
    for start in range(0, len(users), batch):
        chunk = users[start:start + batch]
        top = top_k(scorer(chunk, history), seen[chunk], k)
        shown.update(np.unique(top).tolist())
        for m, v in metrics_per_user(top, relevant[chunk], k).items():
            per_user[m].append(v)
    values = {m: np.concatenate(v) for m, v in per_user.items()}
    is_cold = cold[users]
    out = {f"{m}@{k}": float(v.mean()) for m, v in values.items()}
    out.update({f"cold_{m}@{k}": (float(v[is_cold].mean()) if is_cold.any() else float("nan"))
                for m, v in values.items()})
    out["coverage"] = len(shown) / history.shape[1]
    out["users"], out["cold_users"] = float(len(users)), float(is_cold.sum())
    return out


def shift_back(split: Split) -> Split:
    """The same protocol one period earlier: train minus each customer's last validation-sized slice becomes the
    training part, that slice the validation part, and validation the test part (test is dropped).

    Choices evaluated on it (the two-stage ranker's settings, its sources) see only train and validation."""
    valid_n = np.bincount(split.valid["u"], minlength=split.shape[0])
    train = split.train  # already time-ordered per customer
    position = train.groupby("u").cumcount().to_numpy()
    cut = (split.train_counts() - valid_n)[train["u"].to_numpy()]
    return Split(split.customers, split.items, train[position < cut].reset_index(drop=True),
                 train[position >= cut].reset_index(drop=True), split.valid)


def dense_scorer(matrix: np.ndarray, relevant: csr_matrix) -> Scorer:
    """A scorer over dense scores whose rows are the customers with relevant items, in code order."""
    position = pd.Series(np.arange(matrix.shape[0]), index=np.flatnonzero(np.diff(relevant.indptr)))
    return lambda users, _history: matrix[position[users].to_numpy()]
