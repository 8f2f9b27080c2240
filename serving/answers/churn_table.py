"""Every batch customer's /churn answer kept per churn champion, so a request is (mostly) a lookup.

The batch feature rows only change when the service reloads, so a customer's probability, tier and reasons are the
same on every request. Probabilities of all customers are computed once when the table is built (cheap); reasons
need LightGBM's per-row contributions (TreeSHAP, about 1 ms of CPU per customer), so they are computed the first time
a customer is asked for and kept as compact arrays (see churn_scoring.Explanation): computing them for every
customer up front would cost each worker minutes of CPU at a large retailer, at start-up and at every model reload.
Retention extras (segment, CLV, best offer) are kept likewise, one JSON document per customer.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import pandas as pd

from patron.config import ChurnConfig
from serving.answers.churn_scoring import (
    TOP_REASONS,
    EncodedFeatures,
    Explanation,
    _descriptions,
    _groups,
    explain,
    unknown_score,
)
from training.churn.model import ChurnModel


class _RowAt:
    """Row i of a frame's columns (name -> array) as the mapping reason rendering reads (`get`), without a Series."""

    def __init__(self, columns: dict[str, np.ndarray], i: int) -> None:
        self.columns, self.i = columns, i

    def get(self, key: str, default: Any = None) -> Any:
        column = self.columns.get(key)
        return default if column is None else column[self.i]


class ChurnTable:
    """/churn answers of every customer with a batch feature row, for one booster: what score_customers answers."""

    def __init__(self, booster: ChurnModel, features: pd.DataFrame, churn: ChurnConfig) -> None:
        self.booster = booster
        self.churn = churn
        self.features = features.drop_duplicates("customer_id").reset_index(drop=True)
        encoded = EncodedFeatures(booster, self.features)
        self.matrix, self.row_of = encoded.matrix, encoded.row_of
        self.names = booster.feature_name()
        self.columns = {c: self.features[c].to_numpy() for c in self.features.columns}  # (views where possible)
        self.descriptions = _descriptions()
        self._feature_group, self.phrases = _groups()
        n = len(self.features)
        self.probability = np.asarray(booster.predict(self.matrix), dtype=float) if n else np.empty(0)
        self._explained = np.zeros(n, dtype=bool)
        self._group = np.full((n, TOP_REASONS), -1)
        self._lead = np.zeros((n, TOP_REASONS), dtype=int)
        self._contribution = np.zeros((n, TOP_REASONS))
        self._names: tuple[list[str], list[str], list[np.ndarray]] | None = None
        self._lock = threading.Lock()

    def _explain(self, rows: list[int]) -> Explanation:
        """The reasons of `rows` (computed for those not yet explained) as one Explanation over all rows."""
        todo = sorted({i for i in rows if not self._explained[i]})
        if todo or self._names is None:
            # A few rows: one thread (the churn params' num_threads) beats waking every core, which costs
            # several times the CPU and stalls on busy cores.
            rows_now = todo or [0]
            ex = explain(
                self.booster,
                self.matrix[rows_now],
                self._feature_group,
                self.churn.params.get("num_threads", 0),
                self.probability[rows_now],
                self.names,
            )
            with self._lock:
                for f, arr in (("group", self._group), ("lead", self._lead), ("contribution", self._contribution)):
                    arr[todo] = getattr(ex, f)[: len(todo)]
                self._explained[todo] = True
                self._names = (ex.names, ex.group_names, ex.members)
        return Explanation(self.probability, self._group, self._lead, self._contribution, *self._names)

    def scores(self, customer_ids: Iterable[str]) -> list[dict[str, Any]]:
        """One record per id, in request order (known=False for an id without a batch row)."""
        ids = list(customer_ids)
        rows = {c: self.row_of[c] for c in ids if c in self.row_of}
        ex = self._explain(list(rows.values())) if rows else None
        out = []
        for c in ids:
            i = rows.get(c)
            if i is None:
                out.append(unknown_score(c))
                continue
            p = float(self.probability[i])
            out.append(
                {
                    "customer_id": c,
                    "churn_probability": p,
                    "risk_tier": self.churn.tier(p),
                    "reasons": ex.reasons(i, _RowAt(self.columns, i), self.descriptions, self.phrases),
                    "known": True,
                }
            )
        return out


class ExtrasTable:
    """Per-customer extras (e.g. segment, CLV, best offer) computed once, each kept as a small JSON document."""

    def __init__(self, extras_of: Callable[[list[str]], list[dict[str, Any]]], customer_ids: Iterable[str]) -> None:
        ids = list(dict.fromkeys(customer_ids))  # one call: per-call overheads dwarf the per-customer work
        self._docs = {c: json.dumps(e).encode() for c, e in zip(ids, extras_of(ids)) if e}

    def extras(self, customer_ids: Iterable[str]) -> list[dict[str, Any]]:
        """Per id, what `extras_of` gave for it (a fresh dict), {} for ids it gave nothing for."""
        return [json.loads(self._docs[c]) if c in self._docs else {} for c in customer_ids]
