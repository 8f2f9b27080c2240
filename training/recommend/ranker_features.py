"""Features of (customer, candidate) pairs for the two-stage recommender's ranker: the sources' scores and ranks,
point-in-time item shares, browsing, complement timing, price bands and price choice."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.sparse import csr_matrix

from training.recommend.candidates import NO_RANK, CandidateSources, source_ranks
from training.recommend.price_bands import PriceBands
from training.recommend.price_choice import PriceChoice

COUNT_SOURCES = ("item_item", "copurchase", "repeat", "trending", "popular")


@dataclass
class ItemInfo:
    """Static item attributes by item code: category code (-1 unknown), price level and launch time (seconds since
    1970; NaN unknown)."""

    category: np.ndarray
    price: np.ndarray
    launched: np.ndarray | None = None

    @classmethod
    def empty(cls, n_items: int) -> ItemInfo:
        return cls(np.full(n_items, -1, np.int64), np.full(n_items, np.nan), np.full(n_items, np.nan))


def item_choice_terms(sources: CandidateSources, items: ItemInfo) -> dict[str, np.ndarray]:
    """Per item, the terms of a "category by taste, then item by popularity" choice, from the sources' history
    only: its share of its category's purchases (all and recent), of its category's purchases and browsing events
    together, and its category's share of all purchases."""
    known = items.category >= 0
    cat = np.where(known, items.category, 0)
    n_cat = int(cat.max()) + 1 if len(cat) else 1
    pop, recent = sources.popularity.astype(np.float64), sources.recent_count.astype(np.float64)
    engaged = pop + sources.browse_popularity if sources.has_browsing else pop
    nan = np.full(len(cat), np.nan)
    cat_pop = np.bincount(cat, weights=pop, minlength=n_cat)[cat]

    def share(counts: np.ndarray) -> np.ndarray:
        return np.where(known, counts / np.maximum(np.bincount(cat, weights=counts, minlength=n_cat)[cat], 1.0), nan)

    return {
        "share": share(pop),
        "recent_share": share(recent),
        "engaged_share": share(engaged),
        "prior": np.where(known, cat_pop / max(pop.sum(), 1.0), nan),
    }


CHOICE_FEATURES = (
    "category_share",
    "generative_score",
    "generative_recent",
    "last_item_transition",
    "pending_complement",
)
BROWSING_FEATURES = ("browse_category_share", "browse_generative", "item_browsed")


def choice_features(
    terms: dict[str, np.ndarray],
    item: np.ndarray,
    in_category: np.ndarray,
    n_hist: np.ndarray,
    last_transition: np.ndarray,
    pending: np.ndarray,
    prior_weight: float,
    browsed: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """CHOICE_FEATURES of (customer, item) pairs: `in_category` the customer's history purchases in the item's
    category, `n_hist` all of them, `last_transition` the co-purchase strength from the customer's latest item
    (the accessory of a main item is bought soon after it), `pending` the summed chance that the item follows one
    of the customer's purchases of the last `complement_days` (`CandidateSources.pending`); with `browsed` (the
    customer's browsing events in the item's category, all of them, and of the item itself) also
    BROWSING_FEATURES: the same taste estimate from purchases and browsing together, far more draws of the
    customer's taste than purchases alone."""
    prior = np.nan_to_num(terms["prior"][item])

    def taste(in_cat: np.ndarray, n: np.ndarray) -> np.ndarray:
        return (in_cat + prior_weight * prior) / np.maximum(n + prior_weight, 1e-9)

    share = taste(in_category, n_hist)
    out = {
        "category_share": share,
        "generative_score": share * terms["share"][item],
        "generative_recent": share * terms["recent_share"][item],
        "last_item_transition": last_transition,
        "pending_complement": pending,
    }
    if browsed is not None:
        b_in_category, n_browsed, item_browsed = browsed
        engaged = taste(in_category + b_in_category, n_hist + n_browsed)
        out |= {
            "browse_category_share": engaged,
            "browse_generative": engaged * terms["engaged_share"][item],
            "item_browsed": item_browsed,
        }
    return out


def browsing_of(
    sources: CandidateSources, users: np.ndarray, row: np.ndarray, item: np.ndarray, items: ItemInfo
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """`choice_features`' browsed counts of pairs (users[row], item); None where the sources have no browsing."""
    if not sources.has_browsing:
        return None
    code = np.where(items.category >= 0, items.category, items.category.max(initial=0) + 1)  # unknown: own column
    mine = sources.browsed[users]
    coo = mine.tocoo()
    per_category = np.zeros((len(users), int(code.max(initial=0)) + 1))
    np.add.at(per_category, (coo.row, code[coo.col]), coo.data)
    return (
        per_category[row, code[item]],
        per_category.sum(axis=1)[row],
        np.asarray(mine[row, item], dtype=np.float64).ravel(),
    )


def as_of_features(
    sources: CandidateSources,
    users: np.ndarray,
    row: np.ndarray,
    item: np.ndarray,
    items: ItemInfo,
    choice: dict[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """ItemTimeline's AS_OF_FEATURES of pairs (users[row], item), each customer's moment the last purchase of their
    history (the history's end for customers without one), their taste from `choice`'s category share; none for
    sources fitted before these features existed (a registered model keeps the features it was trained on)."""
    if not hasattr(sources, "moment"):
        return {}
    as_of = sources.moment[users][row]
    out = sources.timeline.features(item, as_of, items.category, _taste(choice), sources.config.as_of_recent_days)
    launched = getattr(items, "launched", None)  # None: unknown (models pickled before launch times were read)
    out["launched_days_after"] = (
        (launched[item] - as_of) / 86400.0 if launched is not None else np.full(len(item), np.nan)
    )
    return out


def complement_timing_features(
    sources: CandidateSources, users: np.ndarray, row: np.ndarray, item: np.ndarray
) -> dict[str, np.ndarray]:
    """The best chance that pairs (users[row], item) follow one of the customer's latest purchases and how many days
    before the customer's last purchase that one was (`CandidateSources.pending_timing`); none for sources fitted
    before these features existed."""
    if not hasattr(sources, "latest_start"):
        return {}
    best, days_ago = sources.pending_timing(users, row, item)
    return {"complement_best": best, "complement_days_ago": days_ago}


def price_band_features(
    sources: CandidateSources,
    users: np.ndarray,
    row: np.ndarray,
    item: np.ndarray,
    items: ItemInfo,
    choice: dict[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """The share of pairs (users[row], item) of the item's category among customers of the same price band, and
    taste x that share (none with `two_stage.price_bands` 0); the bands are computed once per fitted sources."""
    cfg = sources.config
    if not getattr(cfg, "price_bands", 0):  # absent from configs pickled before the bands existed
        return {}
    bands = getattr(sources, "price_bands", None)
    if bands is None:
        bands = sources.price_bands = PriceBands(
            sources.X + sources.browsed, items.price, items.category, cfg.price_bands, cfg.price_band_shrink
        )  # once per sources
    share = bands.share(users[row], item)
    return {"price_band_share": share, "generative_price_band": _taste(choice) * share}


def price_choice_features(
    sources: CandidateSources,
    users: np.ndarray,
    row: np.ndarray,
    item: np.ndarray,
    items: ItemInfo,
    choice: dict[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """The mixed logit's chance of pairs (users[row], item) among the item's category, taste x that chance and the
    customer's price sensitivity (none with `two_stage.price_choice_levels` 0); fitted once per sources."""
    cfg = sources.config
    if not getattr(cfg, "price_choice_levels", 0):  # absent from configs pickled before the choice model existed
        return {}
    model = getattr(sources, "price_choice", None)
    if model is None:
        model = sources.price_choice = PriceChoice(
            sources.X + sources.browsed,
            items.price,
            items.category,
            cfg.price_choice_levels,
            cfg.price_choice_range,
            cfg.price_choice_iterations,
        )
    share = model.share(users[row], item)
    return {
        "price_choice_share": share,
        "generative_price_choice": _taste(choice) * share,
        "price_sensitivity": model.sensitivity(users)[row],
    }


def _taste(choice: dict[str, np.ndarray]) -> np.ndarray:
    """The customer's share of the item's category: from purchases and browsing where the sources have browsing."""
    return choice["browse_category_share"] if "browse_category_share" in choice else choice["category_share"]


def pair_features(
    sources: CandidateSources, users: np.ndarray, items: ItemInfo, seen: csr_matrix
) -> tuple[pd.DataFrame, list[np.ndarray], dict[str, np.ndarray]]:
    """Feature rows for every (user, candidate) pair, the candidate lists and the sources' scores."""
    scores = sources.all_scores(users)
    ranks = source_ranks(scores, seen)
    cands = sources.candidates(scores, ranks)
    row = np.repeat(np.arange(len(users)), [len(c) for c in cands])
    item = np.concatenate(cands) if cands else np.array([], np.int64)
    cols: dict[str, np.ndarray] = {}
    for name, s in scores.items():
        cols[f"{name}_score"] = s[row, item]
        rank = ranks[name][row, item]
        # a zero score from a count-based source means "not reached", not a place in an arbitrary order
        cols[f"{name}_rank"] = np.where(s[row, item] > 0, rank, NO_RANK) if name in COUNT_SOURCES else rank
    hist = sources.history
    pop = sources.popularity
    cols["item_popularity"] = np.log1p(pop[item])
    cols["item_trend"] = sources.recent_count[item] / np.maximum(pop[item], 1.0)
    cols["item_category"] = items.category[item]
    cols["item_price"] = items.price[item]
    n_hist = np.bincount(hist["u"], minlength=sources.shape[0])[users]
    cols["user_interactions"] = n_hist[row].astype(np.float32)
    # category affinity and days since the customer last touched the item's category (history only)
    hc = hist.assign(c=items.category[hist["i"].to_numpy()])
    hc = hc[hc["u"].isin(users)]
    per_cat = hc.groupby(["u", "c"]).agg(n=("i", "size"), last=("ts", "max")).reset_index()
    last_all = hist.groupby("u")["ts"].max()
    key = pd.MultiIndex.from_arrays([users[row], items.category[item]])
    looked = per_cat.set_index(["u", "c"]).reindex(key)
    cols["category_affinity"] = looked["n"].fillna(0.0).to_numpy() / np.maximum(n_hist[row], 1)
    days = (last_all.reindex(users[row]).to_numpy() - looked["last"].to_numpy()) / np.timedelta64(1, "D")
    cols["days_since_category"] = days.astype(np.float64)
    latest = sources.recent[sources.recent["back"] == 0].set_index("u")["i"].reindex(users).to_numpy()
    has_latest = np.isfinite(latest)
    pair_latest = np.where(has_latest, latest, 0).astype(np.int64)[row]
    transition = np.asarray(sources.transitions[pair_latest, item]).ravel() if len(item) else np.zeros(0)
    cols.update(
        choice_features(
            item_choice_terms(sources, items),
            item,
            looked["n"].fillna(0.0).to_numpy(),
            n_hist[row].astype(np.float64),
            np.where(has_latest[row], transition, 0.0),
            sources.pending(users, row, item),
            sources.config.category_prior_weight,
            browsing_of(sources, users, row, item, items),
        )
    )
    cols.update(as_of_features(sources, users, row, item, items, cols))
    cols.update(complement_timing_features(sources, users, row, item))
    cols.update(price_band_features(sources, users, row, item, items, cols))
    cols.update(price_choice_features(sources, users, row, item, items, cols))
    frame = pd.DataFrame(cols)
    frame["user"], frame["item"] = row, item
    return frame, cands, scores


def customer_features(
    sources: CandidateSources, user: int, bought: np.ndarray, bought_ts: np.ndarray, items: ItemInfo, seen: np.ndarray
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """`pair_features` for one customer without pandas (serving): the feature matrix in the same column order,
    the candidate items and the feature names; `bought`/`bought_ts` are the customer's history rows in `sources`,
    `seen` a boolean mask of the items never to propose."""
    scores = sources.all_scores(np.array([user]))
    ranks = source_ranks(scores, csr_matrix(seen[None, :].astype(np.float32)))
    cands = sources.candidates(scores, ranks)[0]
    names, cols = [], []
    for name, s in scores.items():
        value = s[0, cands]
        rank = ranks[name][0, cands]
        names += [f"{name}_score", f"{name}_rank"]
        cols += [value, np.where(value > 0, rank, NO_RANK) if name in COUNT_SOURCES else rank]
    pop, category = sources.popularity[cands], items.category[cands]
    n_hist = len(bought)
    cats = items.category[bought]
    in_cat = cats[None, :] == category[:, None]  # candidates x history rows of the same category
    last = np.where(in_cat, bought_ts[None, :].astype("datetime64[ns]").astype(np.int64), np.iinfo(np.int64).min)
    last_cat = last.max(axis=1, initial=np.iinfo(np.int64).min)
    last_all = bought_ts.astype("datetime64[ns]").astype(np.int64).max() if n_hist else 0
    days = np.where(in_cat.any(axis=1), (last_all - last_cat) / 8.64e13, np.nan)
    names += [
        "item_popularity",
        "item_trend",
        "item_category",
        "item_price",
        "user_interactions",
        "category_affinity",
        "days_since_category",
    ]
    cols += [
        np.log1p(pop),
        sources.recent_count[cands] / np.maximum(pop, 1.0),
        category,
        items.price[cands],
        np.full(len(cands), n_hist, np.float32),
        in_cat.sum(axis=1) / max(n_hist, 1),
        days,
    ]
    # the latest history row (ties in time: the last stored, as the batch path's stable sort keeps them)
    ts = bought_ts.astype("datetime64[ns]").astype(np.int64)
    latest = int(bought[np.flatnonzero(ts == ts.max())[-1]]) if n_hist else -1
    transition = (
        np.asarray(sources.transitions[latest, cands].todense()).ravel() if latest >= 0 else np.zeros(len(cands))
    )
    only = np.zeros(len(cands), np.int64)  # every pair is the one customer's
    choice = choice_features(
        item_choice_terms(sources, items),
        cands,
        in_cat.sum(axis=1).astype(np.float64),
        np.full(len(cands), float(n_hist)),
        transition,
        sources.pending(np.array([user]), only, cands),
        sources.config.category_prior_weight,
        browsing_of(sources, np.array([user]), only, cands, items),
    )
    extra = (
        as_of_features(sources, np.array([user]), only, cands, items, choice)
        | complement_timing_features(sources, np.array([user]), only, cands)
        | price_band_features(sources, np.array([user]), only, cands, items, choice)
        | price_choice_features(sources, np.array([user]), only, cands, items, choice)
    )
    names += list(choice) + list(extra)
    cols += list(choice.values()) + list(extra.values())
    return np.column_stack(cols).astype(np.float64) if len(cands) else np.empty((0, len(names))), cands, names
