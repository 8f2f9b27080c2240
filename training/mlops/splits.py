"""Evaluation splits: RecBole's "TO, RS 8:1:1" per-customer time-ordered split and customer-disjoint folds.

The metrics computed on them are in `training.mlops.metrics`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.sparse import csr_matrix
from sklearn.model_selection import StratifiedGroupKFold


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
    return Split(
        np.asarray(users.categories, dtype=object),
        np.asarray(items.categories, dtype=object),
        frame[position < cut1].reset_index(drop=True),
        frame[(position >= cut1) & (position < cut2)].reset_index(drop=True),
        frame[position >= cut2].reset_index(drop=True),
    )


def targets(split: Split, frame: pd.DataFrame, seen: csr_matrix) -> csr_matrix:
    """Binary matrix of the frame's items that the customer has not already seen."""
    m = split.matrix(frame)
    return (m - m.multiply(seen)).tocsr()


def shift_back(split: Split) -> Split:
    """The same protocol one period earlier: train minus each customer's last validation-sized slice becomes the
    training part, that slice the validation part, and validation the test part (test is dropped).

    Choices evaluated on it (the two-stage ranker's settings, its sources) see only train and validation."""
    valid_n = np.bincount(split.valid["u"], minlength=split.shape[0])
    train = split.train  # already time-ordered per customer
    position = train.groupby("u").cumcount().to_numpy()
    cut = (split.train_counts() - valid_n)[train["u"].to_numpy()]
    return Split(
        split.customers,
        split.items,
        train[position < cut].reset_index(drop=True),
        train[position >= cut].reset_index(drop=True),
        split.valid,
    )


def customer_folds(customer_ids: pd.Series, y: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, ...]]:
    """(train, test) row indices, stratified on the label, with no customer on both sides of any fold."""
    splitter = StratifiedGroupKFold(folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(y)), y, groups=customer_ids.astype(str).to_numpy()))
