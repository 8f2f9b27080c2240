"""Price bands: customers grouped by where their items sit in their categories' price range; what each band picks."""

from __future__ import annotations

import numpy as np
from scipy.sparse import csr_matrix


def price_positions(price: np.ndarray, category: np.ndarray) -> np.ndarray:
    """Each item's log price minus its category's mean log price (0 where the price or category is unknown)."""
    log_price = np.log(np.where(price > 0, price, np.nan))
    known = np.isfinite(log_price) & (category >= 0)
    code = np.where(known, category, 0)
    n = int(code.max(initial=0)) + 1
    total = np.bincount(code[known], weights=log_price[known], minlength=n)
    count = np.bincount(code[known], minlength=n)
    return np.where(known, log_price - (total / np.maximum(count, 1))[code], 0.0)


class PriceBands:
    """Customers cut into `bands` quantiles of the mean price position of the items they bought or browsed; per band,
    each item's share of its category's engagement, shrunk towards the overall share by `shrink` (a price-sensitive
    customer picks the cheaper items of a category, a price-blind one the popular ones)."""

    def __init__(self, engaged: csr_matrix, price: np.ndarray, category: np.ndarray, bands: int, shrink: float) -> None:
        position = price_positions(price, category)
        per_user = np.asarray(engaged.sum(axis=1)).ravel()
        mean_position = np.asarray(engaged @ position).ravel() / np.maximum(per_user, 1e-9)
        active = per_user > 0
        edges = np.quantile(mean_position[active], np.linspace(0, 1, bands + 1)[1:-1]) if active.any() else []
        self.band = np.where(active, np.searchsorted(edges, mean_position), -1)  # -1: nothing engaged yet
        code = np.where(category >= 0, category, category.max(initial=0) + 1)
        overall = _category_share(np.asarray(engaged.sum(axis=0)).ravel(), code)
        per_band = [
            _category_share(np.asarray(engaged[self.band == b].sum(axis=0)).ravel(), code) for b in range(bands)
        ]
        self.shares = np.vstack([(1 - shrink) * s + shrink * overall for s in per_band] + [overall])

    def share(self, users: np.ndarray, item: np.ndarray) -> np.ndarray:
        """The share of pairs (users, item): by the customer's band (the overall share without a band)."""
        return self.shares[self.band[users], item]  # band -1 reads the last row, the overall share


def _category_share(counts: np.ndarray, code: np.ndarray) -> np.ndarray:
    return counts / np.maximum(np.bincount(code, weights=counts)[code], 1.0)
