"""The best possible recommender on the synthetic retailer: rank by the generator's own purchase probabilities."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.sparse import csr_matrix

from features.synthetic.oracle import PARAMS_FILE
from features.synthetic.tables import category_names, item_ids
from features.synthetic.world import Dynamics, build_catalog
from features.tables.store import read_table
from training.mlops.metrics import Scorer
from training.mlops.splits import Split

ORACLE_ROW = "oracle (generator's truth)"
ORACLE_NOTE = (
    "expected purchases in the test window from the generator: taste x within-category choice "
    "(popularity x price^-sensitivity) x availability, plus pending complements of recent purchases"
)


def _days(ts: pd.Series, start: str) -> np.ndarray:
    """Day index of each timestamp in the generator's clock."""
    return ((pd.to_datetime(ts).dt.floor("D") - pd.Timestamp(start)) / pd.Timedelta(days=1)).to_numpy(np.int64)


def oracle_scorer(truth: Path, split: Split) -> Scorer | None:
    """A scorer from a synthetic workspace's ground-truth folder (None where there is none).

    Each customer's score of an item is the expected number of purchases of it in their test window as the
    simulator draws them: browsing purchases (their count in the window times taste[category] x the item's share of
    popularity x price^-sensitivity in its category x the share of the window it is listed and in stock) plus
    complement_later for the accessory of a main item bought within complement_max_delay days before the window.
    Repeat purchases are left out: the protocol excludes items already seen. Only the window's dates and purchase
    count are read from test, never its items."""
    truth = Path(truth)
    if not (truth / PARAMS_FILE).exists():
        return None
    taste_rows = read_table(truth, "taste")
    people = read_table(truth, "customers_truth", columns=["customer_id", "price_sensitivity"])
    if taste_rows is None or people is None:
        return None
    params = json.loads((truth / PARAMS_FILE).read_text())
    dyn = Dynamics()
    cat = build_catalog(int(params["items"]), int(params["days"]), int(params["seed"]), dyn)
    n_cat, days = cat.n_categories, int(params["days"])
    gen = pd.Index(item_ids(np.arange(len(cat.category))).to_pylist()).get_indexer(split.items.astype(str))
    if (gen < 0).any():
        return None  # not the catalogue these ground-truth files describe
    category = cat.category[gen]
    # within-category choice share of every item at each price-sensitivity level
    levels = np.asarray(dyn.price_levels)
    weights = cat.popularity[None, :] * cat.base_price[None, :] ** -levels[:, None]
    per_cat = np.stack([np.bincount(cat.category, weights=w, minlength=n_cat) for w in weights])
    choice = (weights / per_cat[:, cat.category])[:, gen]
    names = pd.Index(category_names(cat))
    taste = np.full((split.shape[0], n_cat), dyn.taste_floor / n_cat)  # written rows leave out the floor-only ones
    customers = pd.Index(split.customers.astype(str))
    rows = customers.get_indexer(taste_rows["customer_id"].astype(str))
    cols = names.get_indexer(taste_rows["category"].astype(str))
    keep = (rows >= 0) & (cols >= 0)
    taste[rows[keep], cols[keep]] = taste_rows["weight"].to_numpy(np.float64)[keep]
    sens = people.set_index(people["customer_id"].astype(str))["price_sensitivity"].reindex(customers)
    level = np.searchsorted(levels, sens.fillna(levels[0]).to_numpy())
    listed = (np.arange(days)[:, None] >= cat.launch_day[None, gen]) & ~cat.oos[:, gen]
    open_days = np.vstack([np.zeros((1, len(gen))), np.cumsum(listed, axis=0)])
    test_days = _days(split.test["ts"], params["start_date"])
    first = pd.Series(test_days).groupby(split.test["u"].to_numpy()).min()
    last = pd.Series(test_days).groupby(split.test["u"].to_numpy()).max()
    n_test = np.bincount(split.test["u"], minlength=split.shape[0]).astype(np.float64)
    history = pd.concat([split.train, split.valid], ignore_index=True)
    accessory = pd.Index(gen).get_indexer(cat.complement[gen])  # split code of each item's complement (-1 none)
    h_days = _days(history["ts"], params["start_date"])
    h_acc = accessory[history["i"].to_numpy()]
    recent = (h_acc >= 0) & (h_days >= first.reindex(history["u"]).to_numpy() - dyn.complement_max_delay)
    pending = csr_matrix(
        (np.full(int(recent.sum()), dyn.complement_later), (history["u"].to_numpy()[recent], h_acc[recent])),
        shape=split.shape,
    )
    pending.sum_duplicates()
    pending.data[:] = dyn.complement_later  # one pending accessory per item, however often its main was bought

    def score(users: np.ndarray, _history: csr_matrix) -> np.ndarray:
        lo = np.clip(first.reindex(users).fillna(0).to_numpy(np.int64), 0, days - 1)
        hi = np.clip(last.reindex(users).fillna(0).to_numpy(np.int64), lo, days - 1)
        available = (open_days[hi + 1] - open_days[lo]) / (hi - lo + 1)[:, None]
        browse = taste[users][:, category] * choice[level[users]] * n_test[users][:, None]
        return (browse + pending[users].toarray()) * available

    return score
