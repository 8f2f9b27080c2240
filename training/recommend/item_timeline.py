"""Point-in-time item statistics: how often each item and its category were bought (and browsed) before a moment."""

from __future__ import annotations

import numpy as np
import pandas as pd

AS_OF_FEATURES = (
    "item_count_as_of",
    "item_share_as_of",
    "engaged_share_as_of",
    "item_recent_share_as_of",
    "generative_as_of",
    "generative_recent_as_of",
)


class ItemTimeline:
    """Dated events of every item (purchases, optionally browsing), counted in any window before any moment.

    The moment is each customer's own time, the last purchase of their history: under a per-customer time split
    the next purchases follow it, so the items on sale then (launched, not yet faded) are the ones that count."""

    def __init__(self, purchases: pd.DataFrame, browsing: pd.DataFrame | None = None) -> None:
        engaged = (
            purchases
            if browsing is None or not len(browsing)
            else pd.concat([purchases[["i", "ts"]], browsing[["i", "ts"]]])
        )
        self.purchased = _Events(purchases["i"].to_numpy(np.int64), seconds_of(purchases["ts"]))
        self.engaged = _Events(engaged["i"].to_numpy(np.int64), seconds_of(engaged["ts"]))
        self._by_category: _ByCategory | None = None

    def features(
        self, item: np.ndarray, as_of: np.ndarray, category: np.ndarray, taste: np.ndarray, recent_days: int
    ) -> dict[str, np.ndarray]:
        """AS_OF_FEATURES of (item, moment) pairs (`as_of` in seconds, `category` per item code, -1 unknown; `taste`
        the customer's share of the item's category): purchases of the item before the moment, its share of its
        category's purchases since the item was first seen, the same with browsing, its share of the category's
        purchases and browsing in the last `recent_days`, and taste x those shares."""
        code = np.where(category >= 0, category, category.max(initial=0) + 1)  # unknown: a category of its own
        by_category = self._categories(code)
        pair_cat, start = code[item], as_of - recent_days * 86400
        bought, engaged = self.purchased.before(item, as_of), self.engaged.before(item, as_of)
        cat_engaged_now = by_category.engaged.before(pair_cat, as_of)
        # the category's events since the item was first seen: before the moment minus before the first sighting
        cat_bought = by_category.purchased.before(pair_cat, as_of) - by_category.purchased_before_first[item]
        cat_engaged = cat_engaged_now - by_category.engaged_before_first[item]
        engaged_share = engaged / np.maximum(cat_engaged, 1.0)
        recent = engaged - self.engaged.before(item, start)
        cat_recent = cat_engaged_now - by_category.engaged.before(pair_cat, start)
        recent_share = recent / np.maximum(cat_recent, 1.0)
        return {
            "item_count_as_of": np.log1p(bought),
            "item_share_as_of": bought / np.maximum(cat_bought, 1.0),
            "engaged_share_as_of": engaged_share,
            "item_recent_share_as_of": recent_share,
            "generative_as_of": taste * engaged_share,
            "generative_recent_as_of": taste * recent_share,
        }

    def _categories(self, code: np.ndarray) -> _ByCategory:
        """The events keyed by category code instead of item (built once per category mapping)."""
        if self._by_category is None or not np.array_equal(self._by_category.code, code):
            self._by_category = _ByCategory(code, self.purchased, self.engaged)
        return self._by_category


class _Events:
    """Event times sorted by (key, time), so a count before a moment is one binary search."""

    def __init__(self, key: np.ndarray, seconds: np.ndarray) -> None:
        self.key, self.seconds = key, seconds
        self.span = int(seconds.max(initial=0)) + 2  # every moment clips into [0, span): nothing sorts past a key
        self.sorted = np.sort(key * self.span + seconds)
        self.first = np.full(int(key.max(initial=-1)) + 1, np.iinfo(np.int64).max)
        np.minimum.at(self.first, key, seconds)
        # where each key's events start in `sorted` (keys past the last: the end)
        self.start = np.searchsorted(self.sorted, np.arange(len(self.first) + 1) * self.span, side="left")

    def rekey(self, mapping: np.ndarray) -> _Events:
        return _Events(mapping[self.key], self.seconds)

    def first_seen(self, key: np.ndarray) -> np.ndarray:
        """Time of each key's first event (the far future for keys never seen)."""
        known = key < len(self.first)
        return np.where(known, self.first[np.where(known, key, 0)], np.iinfo(np.int64).max)

    def before(self, key: np.ndarray, moment: np.ndarray | int) -> np.ndarray:
        """Events of each key dated before the moment (seconds after 1970)."""
        needles = key * self.span + np.clip(moment, 0, self.span - 1)
        # unique needles come sorted (numpy's binary search then reuses the last position) and repeat rarely
        unique, inverse = np.unique(needles, return_inverse=True)
        own = self.start[np.minimum(unique // self.span, len(self.first))]
        return (np.searchsorted(self.sorted, unique, side="left") - own)[inverse].astype(np.float64)


class _ByCategory:
    """An ItemTimeline's events keyed by category, and per item its category's events before its first sighting."""

    def __init__(self, code: np.ndarray, purchased: _Events, engaged: _Events) -> None:
        self.code = code
        self.purchased, self.engaged = purchased.rekey(code), engaged.rekey(code)
        items = np.arange(len(code))
        first = engaged.first_seen(items)
        self.purchased_before_first = self.purchased.before(code, first)
        self.engaged_before_first = self.engaged.before(code, first)


def seconds_of(ts: pd.Series | np.ndarray) -> np.ndarray:
    """Timestamps as int64 seconds, the unit of ItemTimeline's moments."""
    return np.asarray(ts, dtype="datetime64[s]").astype(np.int64)
