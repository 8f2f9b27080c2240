"""What every servable recommender offers (`Recommender`), and the folders a logged one leaves in its artifacts."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Protocol, Self

import numpy as np

# A logged recommender's artifacts folder holds ALS_ARTIFACT (the ALS model every pipeline answers popularity,
# similar items and live histories with) and, for a two-stage pipeline, TWO_STAGE_ARTIFACT (its sources and ranker).
ALS_ARTIFACT, TWO_STAGE_ARTIFACT = "recommender", "two_stage"
TWO_STAGE_META = "two_stage.json"  # in TWO_STAGE_ARTIFACT: present exactly when the folder holds a two-stage pipeline


class Reason(NamedTuple):
    """Why a recommender put an item forward: its kind and the bought item behind it (None when it names none)."""

    kind: str  # "similar" (to a bought item), "bought_with" (a recent one), "restock" or "popular"
    anchor: str | None


Scored = tuple[str, float]  # (item id, score), best first in every answer
Explained = tuple[str, float, Reason]


class Recommender(Protocol):
    """A trained recommender as serving uses it; items and customers are the ids it was trained on.

    `exclude` items never come back; `allowed` (None: every item) limits the answer. A frozenset `allowed` is the
    serving state's candidate pool, whose item mask an implementation may keep while the frozenset lives."""

    customer_ids: np.ndarray
    item_ids: np.ndarray

    def knows_customer(self, customer_id: str) -> bool:
        """Whether the customer has personalised recommendations."""
        ...

    def knows_item(self, item_id: str) -> bool:
        """Whether the item is in the catalogue the model was trained on."""
        ...

    def recommend(
        self,
        customer_id: str,
        k: int,
        exclude: set[str] | frozenset[str] = frozenset(),
        allowed: set[str] | frozenset[str] | None = None,
    ) -> list[Scored]:
        """Top-k items for a known customer (KeyError when unknown)."""
        ...

    def recommend_explained(
        self,
        customer_id: str,
        k: int,
        exclude: set[str] | frozenset[str] = frozenset(),
        allowed: set[str] | frozenset[str] | None = None,
    ) -> list[Explained]:
        """`recommend`'s answer, each item with the reason it was put forward."""
        ...

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
        """Top-k items for a customer known only by live interactions (item ids with confidence weights)."""
        ...

    def popular(
        self, k: int, exclude: set[str] | frozenset[str] = frozenset(), allowed: set[str] | frozenset[str] | None = None
    ) -> list[Scored]:
        """The k most popular items."""
        ...

    def similar_items(
        self,
        item_id: str,
        k: int,
        allowed: set[str] | frozenset[str] | None = None,
        exclude: set[str] | frozenset[str] = frozenset(),
    ) -> list[Scored]:
        """Items closest to a known item (KeyError when unknown), the item itself left out."""
        ...

    def save(self, folder: Path) -> Path:
        """Write the model's files into `folder` and return it."""
        ...

    @classmethod
    def load(cls, folder: Path) -> Self:
        """Read a model written by `save`."""
        ...
