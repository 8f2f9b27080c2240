"""Second stage of the two-stage recommender: features of (customer, candidate) pairs and a LightGBM LambdaRank."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy.sparse import csr_matrix

from patron.config import SequenceConfig, TwoStageConfig
from training.recommend.candidates import NO_RANK, CandidateSources, candidate_recall, source_ranks
from training.recommend.price_bands import PriceBands
from training.recommend.price_choice import PriceChoice

COUNT_SOURCES = ("item_item", "copurchase", "repeat", "trending", "popular")
# LambdaRank labels when the items browsed in a label window count too (two_stage.browsing_labels)
PURCHASE_LABEL, BROWSED_LABEL = 2.0, 1.0


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
