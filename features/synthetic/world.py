"""The simulated retailer's world: its catalogue (with schedules) and its customers' latent traits."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from features.tables.contract import CHANNELS, OFFER_TYPES

NEVER = 1 << 29  # a day index that never comes
DEPARTMENTS = ("Grocery", "Home", "Electronics", "Fashion", "Beauty", "Sports", "Toys", "Garden", "Books", "Pets")
REGIONS = ("north", "south", "east", "west", "central")


@dataclass(frozen=True)
class Dynamics:
    """Named parameters of the simulated behaviour; rates are per day unless named otherwise."""

    items_per_category: int = 25
    min_categories: int = 8
    max_categories: int = 60
    categories_per_department: int = 5
    consumable_share: float = 0.4
    consumable_cycle_days: tuple[int, int] = (14, 56)
    main_item_share: float = 0.15
    popularity_sigma: float = 1.3
    category_price_sigma: float = 0.8
    category_price_median: float = 25.0
    item_price_sigma: float = 0.35
    price_levels: tuple[float, ...] = (0.0, 0.6, 1.2, 1.8)  # price-sensitivity exponents on item price
    stockout_episodes_per_year: float = 1.0
    stockout_mean_days: float = 8.0
    out_of_stock_at_end: float = 0.03
    launched_during_share: float = 0.1
    price_shocks_per_year: float = 4.0
    price_shock_size: tuple[float, float] = (0.1, 0.3)
    existing_customer_share: float = 0.35
    signup_window_share: float = 0.85  # new customers join within this share of the period
    taste_extra_categories: float = 1.5  # Poisson mean of favourite categories beyond the first
    taste_floor: float = 0.03  # mass spread over all categories
    session_rate_median: float = 0.14
    session_rate_sigma: float = 0.5
    extra_views_per_session: float = 1.5
    cart_prob: float = 0.3
    buy_prob: float = 0.6
    rebuy_prob: float = 0.8
    rebuy_postpone_days: int = 7
    owned_slots: int = 6  # durables a customer remembers owning (and does not buy again)
    cycle_sigma: float = 0.2
    complement_same_order: float = 0.35
    complement_later: float = 0.25
    complement_max_delay: int = 10
    pref_channel_prob: float = 0.8
    channel_shares: tuple[float, float, float] = (0.45, 0.35, 0.20)
    base_hazard_median: float = 0.002
    base_hazard_sigma: float = 0.5
    hazard_max: float = 0.25
    w_dissat: float = 0.9
    w_price: float = 1.0
    w_tier: float = 0.2
    w_engagement: float = 0.5
    w_mood: float = 0.35
    dissat_half_life: float = 45.0
    price_shock_half_life: float = 60.0
    engagement_half_life: float = 30.0
    price_shock_weight: float = 8.0  # converts sensitivity x taste x price rise into hazard units
    shock_stockout: float = 0.25
    shock_late: float = 0.4
    shock_quality: float = 0.6
    shock_unresolved: float = 1.2
    shock_ticket: float = 0.1
    unresolved_delay: int = 7
    late_prob: float = 0.07
    late_ticket_prob: float = 0.5
    quality_ticket_prob: float = 0.6
    return_ticket_prob: float = 0.15
    stockout_ticket_prob: float = 0.1
    price_ticket_scale: float = 0.3
    staff_ticket_prob: float = 0.01
    other_ticket_prob: float = 0.0004
    resolve_prob: float = 0.8
    quality_rate: tuple[float, float] = (0.01, 0.06)
    return_rate: tuple[float, float] = (0.02, 0.12)
    return_max_delay: int = 20
    survey_prob: float = 1 / 60
    survey_response: float = 0.5
    tier_points: tuple[int, ...] = (0, 200, 800, 2000, 5000)
    shock_window: int = 32  # days of scheduled experiences kept ahead (> return delay + unresolved delay)
    redeem_base: float = 0.1
    redeem_gain: float = 0.4
    personalization_consent: float = 0.85
    marketing_consent: float = 0.82  # among those consenting to personalisation
    nps_base: float = 7.5
    csat_base: float = 3.9


@dataclass
class Catalog:
    """Items, categories and the day-by-day stock and price schedules."""

    category: np.ndarray  # item -> category
    department: np.ndarray  # category -> department
    consumable: np.ndarray  # category -> bool
    cycle: np.ndarray  # category -> re-buy cycle in days (0 for durables)
    cons_index: np.ndarray  # category -> column among consumables, -1 for durables
    quality_rate: np.ndarray  # category
    return_rate: np.ndarray  # category
    base_price: np.ndarray  # item
    popularity: np.ndarray  # item
    brand: np.ndarray  # item
    complement: np.ndarray  # item -> accessory item, -1 when none
    launch_day: np.ndarray  # item
    oos: np.ndarray  # (day, item) -> out of stock
    price_mult: np.ndarray  # (day, category) price multiplier
    price_events: dict[int, list[tuple[int, float]]]  # day -> [(category, relative rise)]
    order: np.ndarray  # items sorted by category (for sampling)
    gcdf: np.ndarray  # per (price level, category) cumulative choice weights, offset by block index

    @property
    def n_categories(self) -> int:
        return len(self.department)


def build_catalog(items: int, days: int, seed: int, dyn: Dynamics) -> Catalog:
    """A catalogue with long-tailed popularity, category price levels, complements and stock/price schedules."""
    rng = np.random.default_rng([seed, 0])
    n_cat = int(np.clip(items // dyn.items_per_category, dyn.min_categories, dyn.max_categories))
    department = np.arange(n_cat) // dyn.categories_per_department % len(DEPARTMENTS)
    consumable = rng.random(n_cat) < dyn.consumable_share
    consumable[0], consumable[1] = True, False  # always both kinds
    cycle = np.where(consumable, rng.integers(*dyn.consumable_cycle_days, n_cat), 0)
    cons_index = np.where(consumable, np.cumsum(consumable) - 1, -1)
    level = dyn.category_price_median * rng.lognormal(0, dyn.category_price_sigma, n_cat)
    level = np.where(consumable, level / 3, level)  # consumables are cheaper
    cat_weight = rng.dirichlet(np.ones(n_cat))
    category = np.concatenate([np.arange(n_cat), rng.choice(n_cat, items - n_cat, p=cat_weight)])
    category = np.sort(category)
    base_price = np.round(level[category] * rng.lognormal(0, dyn.item_price_sigma, items), 2) + 0.99
    popularity = rng.lognormal(0, dyn.popularity_sigma, items)
    complement = np.full(items, -1)
    mains = np.flatnonzero(~consumable[category] & (rng.random(items) < dyn.main_item_share))
    for m in mains:  # the accessory comes from another category of the same department
        same_dept = np.flatnonzero((department[category] == department[category[m]]) & (category != category[m]))
        pool = same_dept if len(same_dept) else np.flatnonzero(category != category[m])
        complement[m] = rng.choice(pool)
    launch_day = np.where(
        rng.random(items) < dyn.launched_during_share, rng.integers(0, days, items), -rng.integers(1, 3 * 365, items)
    )
    oos = np.zeros((days, items), dtype=bool)
    episodes = rng.poisson(dyn.stockout_episodes_per_year * days / 365, items)
    for item in np.flatnonzero(episodes):
        for start in rng.integers(0, days, episodes[item]):
            oos[start : start + 1 + rng.geometric(1 / dyn.stockout_mean_days), item] = True
    ending = rng.random(items) < dyn.out_of_stock_at_end
    ending[rng.integers(items)] = True  # at least one item is out of stock at the end
    for item in np.flatnonzero(ending):
        oos[days - 1 - rng.geometric(1 / dyn.stockout_mean_days) :, item] = True
    price_mult = np.ones((days, n_cat))
    price_events: dict[int, list[tuple[int, float]]] = {}
    for _ in range(rng.poisson(dyn.price_shocks_per_year * days / 365)):
        day, c, rise = int(rng.integers(1, days)), int(rng.integers(n_cat)), float(rng.uniform(*dyn.price_shock_size))
        price_mult[day:, c] *= 1 + rise
        price_events.setdefault(day, []).append((c, rise))
    quality_rate = rng.uniform(*dyn.quality_rate, n_cat)
    return_rate = rng.uniform(*dyn.return_rate, n_cat)
    order = np.argsort(category, kind="stable")
    blocks = []
    for li, beta in enumerate(dyn.price_levels):
        w = popularity[order] * base_price[order] ** -beta
        cs = np.cumsum(w)
        cat_sorted = category[order]
        first = np.searchsorted(cat_sorted, np.arange(n_cat))
        before = np.concatenate([[0.0], cs])[first][cat_sorted]
        total = np.bincount(cat_sorted, weights=w, minlength=n_cat)[cat_sorted]
        blocks.append(li * n_cat + cat_sorted + (cs - before) / total)
    gcdf = np.concatenate(blocks)
    gcdf = np.maximum.accumulate(gcdf)  # guard against rounding at block edges
    return Catalog(
        category,
        department,
        consumable,
        cycle,
        cons_index,
        quality_rate,
        return_rate,
        base_price,
        popularity,
        rng.integers(0, max(items // 10, 2), items),
        complement,
        launch_day,
        oos,
        price_mult,
        price_events,
        order,
        gcdf,
    )


def sample_items(cat: Catalog, level: np.ndarray, category: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Items drawn by popularity x price^-sensitivity within the given categories."""
    n_items = len(cat.order)
    pos = np.searchsorted(cat.gcdf, level * cat.n_categories + category + u, side="right")
    return cat.order[np.minimum(pos, len(cat.gcdf) - 1) % n_items]


@dataclass
class Population:
    """Latent, fixed traits of a chunk of customers."""

    signup_day: np.ndarray
    taste: np.ndarray  # (customer, category) weights summing to 1
    taste_cum: np.ndarray
    rate: np.ndarray  # browsing sessions per day
    level: np.ndarray  # index into Dynamics.price_levels
    channel: np.ndarray  # index into CHANNELS
    logh0: np.ndarray  # log of the baseline daily dropout hazard
    mood: np.ndarray  # baseline satisfaction (standard normal)
    cycle_factor: np.ndarray  # personal speed of using up consumables
    effect: np.ndarray  # (customer, offer type) log-hazard effect while an offer is running
    region: np.ndarray
    birth_year: np.ndarray
    personalization: np.ndarray
    marketing: np.ndarray


def take(obj, idx: np.ndarray):
    """The same dataclass of arrays restricted (or repeated) to rows `idx`."""
    return type(obj)(**{f.name: getattr(obj, f.name)[idx] for f in fields(obj)})


def build_population(n: int, cat: Catalog, days: int, seed: int, chunk: int, dyn: Dynamics) -> Population:
    """`n` customers with sparse tastes, heterogeneous rates, price sensitivity, hazard and treatment effects."""
    rng = np.random.default_rng([seed, 1, chunk])
    existing = rng.random(n) < dyn.existing_customer_share
    signup = np.where(existing, -rng.integers(1, 2 * 365, n), rng.integers(0, int(days * dyn.signup_window_share), n))
    c = cat.n_categories
    cat_pop = np.bincount(cat.category, weights=cat.popularity, minlength=c)
    cat_pop /= cat_pop.sum()
    taste = np.zeros((n, c))
    k = 1 + rng.poisson(dyn.taste_extra_categories, n)
    rows = np.repeat(np.arange(n), k)
    taste[rows, rng.choice(c, len(rows), p=cat_pop)] += rng.gamma(1.0, 1.0, len(rows))
    taste /= taste.sum(1, keepdims=True)
    taste = (1 - dyn.taste_floor) * taste + dyn.taste_floor / c
    rate = np.clip(dyn.session_rate_median * rng.lognormal(0, dyn.session_rate_sigma, n), 0.003, 0.8)
    level = rng.integers(0, len(dyn.price_levels), n)
    channel = rng.choice(len(CHANNELS), n, p=dyn.channel_shares)
    mood = rng.normal(0, 1, n)
    sens = level / (len(dyn.price_levels) - 1)
    effect = np.zeros((n, len(OFFER_TYPES)))
    # Heterogeneous effects: each offer type helps a different kind of customer and slightly hurts a few.
    effect[:, OFFER_TYPES.index("discount_voucher")] = 0.15 - 1.0 * sens
    effect[:, OFFER_TYPES.index("free_delivery")] = np.where(channel != CHANNELS.index("store"), -0.7, 0.05)
    effect[:, OFFER_TYPES.index("double_points")] = -0.6 * (rate > dyn.session_rate_median)
    effect[:, OFFER_TYPES.index("personal_call")] = np.where(mood < -0.5, -1.0, np.where(mood > 1.0, 0.3, 0.0))
    effect += rng.normal(0, 0.1, effect.shape)
    personalization = rng.random(n) < dyn.personalization_consent
    return Population(
        signup_day=signup.astype(np.int32),
        taste=taste.astype(np.float32),
        taste_cum=np.cumsum(taste, 1).astype(np.float32),
        rate=rate.astype(np.float32),
        level=level.astype(np.int8),
        channel=channel.astype(np.int8),
        logh0=(np.log(dyn.base_hazard_median) + rng.normal(0, dyn.base_hazard_sigma, n)).astype(np.float32),
        mood=mood.astype(np.float32),
        cycle_factor=rng.lognormal(0, dyn.cycle_sigma, n).astype(np.float32),
        effect=effect.astype(np.float32),
        region=rng.integers(0, len(REGIONS), n).astype(np.int8),
        birth_year=rng.integers(1940, 2006, n).astype(np.int16),
        personalization=personalization,
        marketing=personalization & (rng.random(n) < dyn.marketing_consent),
    )
