"""Point-in-time customer features: SQL over the workspace tables, reading only records strictly before the cutoff.

Every record is filtered on the time it became known: events on `ts`, tickets on `opened_at` (a ticket resolved
at or after the cutoff is still open, its satisfaction unknown), surveys and the loyalty ledger on `ts`, offers on
`sent_at` (an offer redeemed at or after the cutoff is not redeemed). Customers who sign up at or after the cutoff
are absent. The `loyalty_tier` column of the customers table is a snapshot taken at export time, so it is never
used: the tier comes from the ledger. Features that need an optional table (or optional column) that the retailer
did not provide are left out of the output rather than filled with nulls.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from features.pit.feature_text import (  # noqa: F401  (re-exported: callers read the phrases from here)
    FEATURE_DESCRIPTIONS,
    FEATURE_GROUPS,
    GROUP_PHRASES,
    register_decay_descriptions,
    register_window_descriptions,
)
from features.tables.contract import CHANNELS, LOYALTY_TIERS, TICKET_CATEGORIES
from features.tables.warehouse import Warehouse
from patron.config import FeatureConfig

# Days between two timestamps, fractional.
_DAYS = "(epoch({end}) - epoch({start})) / 86400.0"


def _days(start: str, end: str = "$cutoff") -> str:
    return _DAYS.format(start=start, end=end)


def _since(w: int) -> str:
    return f"$cutoff - INTERVAL {int(w)} DAY"


@dataclass
class _Family:
    """CTEs producing one row per customer (in CTE `alias`) and the feature expressions selected from it."""

    alias: str
    ctes: list[str]
    selects: dict[str, str] = field(default_factory=dict)  # feature -> SQL expression
    categoricals: dict[str, list[str]] = field(default_factory=dict)
    also_joined: list[str] = field(default_factory=list)  # further one-row-per-customer CTEs the selects read


def _events_family(wh: Warehouse, windows: list[int]) -> list[_Family]:
    ctes = [
        """ev AS (SELECT customer_id, item_id, ts, type, quantity, unit_price, channel,
                         coalesce(order_id, event_id) AS order_key
                  FROM events WHERE ts < $cutoff)""",
        """orders AS (SELECT customer_id, order_key, min(ts) AS ts, sum(quantity) AS units,
                             sum(quantity * unit_price) AS value
                      FROM ev WHERE type = 'purchase' GROUP BY customer_id, order_key)""",
    ]
    order_aggs = [
        "count(*) AS n_orders",
        "sum(value) AS spend",
        "avg(value) AS aov",
        "avg(units) AS basket",
        "max(ts) AS last_ts",
        "min(ts) AS first_ts",
    ]
    for w in windows:
        order_aggs += [
            f"count(*) FILTER (WHERE ts >= {_since(w)}) AS n_{w}",
            f"count(*) FILTER (WHERE ts >= {_since(2 * w)} AND ts < {_since(w)}) AS n_prev_{w}",
            f"coalesce(sum(value) FILTER (WHERE ts >= {_since(w)}), 0) AS s_{w}",
            f"coalesce(sum(value) FILTER (WHERE ts >= {_since(2 * w)} AND ts < {_since(w)}), 0) AS s_prev_{w}",
        ]
    ctes.append(f"f_orders AS (SELECT customer_id, {', '.join(order_aggs)} FROM orders GROUP BY customer_id)")
    ev_aggs = [
        "max(ts) AS last_event_ts",
        "count(*) FILTER (WHERE type = 'view') AS n_views",
        "count(*) FILTER (WHERE type = 'purchase') AS n_lines",
        "sum(quantity) FILTER (WHERE type = 'purchase') AS units_bought",
        "coalesce(sum(quantity) FILTER (WHERE type = 'return'), 0) AS units_returned",
        "count(DISTINCT item_id) FILTER (WHERE type = 'purchase') AS n_items",
        *[f"count(*) FILTER (WHERE type = 'purchase' AND channel = '{c}') AS ch_{c}" for c in CHANNELS],
        *[f"count(*) FILTER (WHERE type = 'view' AND ts >= {_since(w)}) AS v_{w}" for w in windows],
    ]
    ctes.append(f"f_ev AS (SELECT customer_id, {', '.join(ev_aggs)} FROM ev GROUP BY customer_id)")
    # Gaps between distinct purchase days, so that several orders on one day count once.
    ctes.append("""f_gaps AS (
        SELECT customer_id, avg(gap) AS gap_mean, stddev_samp(gap) AS gap_std
        FROM (SELECT customer_id, date_diff('day', lag(d) OVER (PARTITION BY customer_id ORDER BY d), d) AS gap
              FROM (SELECT DISTINCT customer_id, CAST(ts AS DATE) AS d FROM orders))
        GROUP BY customer_id)""")
    orders = _Family(
        "f_orders",
        ctes[:3],
        {
            "days_since_last_purchase": _days("f_orders.last_ts"),
            "days_since_first_purchase": _days("f_orders.first_ts"),
            "orders_total": "coalesce(f_orders.n_orders, 0)",
            "spend_total": "coalesce(f_orders.spend, 0)",
            "avg_order_value": "f_orders.aov",
            "basket_size_mean": "f_orders.basket",
        },
    )
    for w in windows:
        orders.selects[f"orders_{w}d"] = f"coalesce(f_orders.n_{w}, 0)"
        orders.selects[f"spend_{w}d"] = f"coalesce(f_orders.s_{w}, 0)"
        orders.selects[f"orders_trend_{w}d"] = f"coalesce(f_orders.n_{w} - f_orders.n_prev_{w}, 0)"
        orders.selects[f"spend_trend_{w}d"] = f"coalesce(f_orders.s_{w} - f_orders.s_prev_{w}, 0)"
    activity = _Family(
        "f_ev",
        [ctes[3]],
        {
            "days_since_last_event": _days("f_ev.last_event_ts"),
            "views_total": "coalesce(f_ev.n_views, 0)",
            "item_breadth": "coalesce(f_ev.n_items, 0)",
            "returns_rate": "f_ev.units_returned / nullif(f_ev.units_bought, 0)",
            "view_to_purchase": "f_ev.n_lines / nullif(f_ev.n_views, 0)",
            **{f"channel_share_{c}": f"f_ev.ch_{c} / nullif(f_ev.n_lines, 0)" for c in CHANNELS},
            **{f"views_{w}d": f"coalesce(f_ev.v_{w}, 0)" for w in windows},
        },
    )
    gaps = _Family(
        "f_gaps",
        [ctes[4]],
        {
            "gap_mean_days": "f_gaps.gap_mean",
            "gap_std_days": "f_gaps.gap_std",
            "recency_gap_ratio": f"{_days('f_orders.last_ts')} / nullif(f_gaps.gap_mean, 0)",
        },
    )
    families = [orders, activity, gaps]
    if wh.has("products", "category"):
        families.append(
            _Family(
                "f_cat",
                [
                    """f_cat AS (
            SELECT ev.customer_id, count(DISTINCT p.category) AS n_categories
            FROM ev JOIN products p USING (item_id) WHERE ev.type = 'purchase' GROUP BY ev.customer_id)"""
                ],
                {"category_breadth": "coalesce(f_cat.n_categories, 0)"},
            )
        )
    return families


def _browsing_streak_family() -> _Family:
    # Days with product views since the last purchase (all view days for a customer who never bought).
    cte = """f_vs AS (SELECT v.customer_id, count(DISTINCT CAST(v.ts AS DATE)) AS n
                     FROM ev v LEFT JOIN (SELECT customer_id, max(ts) AS last_buy FROM ev WHERE type = 'purchase'
                                          GROUP BY 1) b ON b.customer_id = v.customer_id
                     WHERE v.type = 'view' AND (b.last_buy IS NULL OR v.ts > b.last_buy) GROUP BY 1)"""
    return _Family("f_vs", [cte], {"view_days_since_purchase": "coalesce(f_vs.n, 0)"})


def _channel_shift_family(days: int) -> _Family:
    # Total variation distance between the channel mix of the customer's events in the last `days` and before
    # (0: the same mix, 1: entirely other channels); null unless both periods have events with a channel.
    counts = [f"count(*) FILTER (WHERE ts >= {_since(days)}) AS r", f"count(*) FILTER (WHERE ts < {_since(days)}) AS e"]
    for c in CHANNELS:
        counts += [
            f"count(*) FILTER (WHERE ts >= {_since(days)} AND channel = '{c}') AS r_{c}",
            f"count(*) FILTER (WHERE ts < {_since(days)} AND channel = '{c}') AS e_{c}",
        ]
    distance = " + ".join(f"abs(r_{c} / nullif(r, 0) - e_{c} / nullif(e, 0))" for c in CHANNELS)
    cte = f"""f_ch AS (SELECT customer_id, 0.5 * ({distance}) AS shift
                      FROM (SELECT customer_id, {", ".join(counts)} FROM ev WHERE channel IS NOT NULL GROUP BY 1))"""
    return _Family("f_ch", [cte], {"channel_shift": "f_ch.shift"})


def _rebuy_family(min_gaps: int, same_item_share: float) -> _Family:
    # Re-bought categories (consumables): at least `min_gaps` gaps between a customer's purchase days in the
    # category before the cutoff, and at least `same_item_share` of them re-buying the item bought the time before.
    # Their usual re-buy interval is the median gap; a customer is overdue when every such category they buy from
    # has gone longer than that without a purchase (the least overdue category counts).
    ctes = [
        """rb_days AS (SELECT DISTINCT ev.customer_id, p.category, CAST(ev.ts AS DATE) AS d, ev.item_id
                          FROM ev JOIN products p USING (item_id) WHERE ev.type = 'purchase')""",
        f"""rb_cycle AS (
                SELECT category, median(gap) AS cycle
                FROM (SELECT category, date_diff('day', lag(d) OVER w, d) AS gap,
                             CAST(item_id = lag(item_id) OVER w AS DOUBLE) AS same
                      FROM rb_days WINDOW w AS (PARTITION BY customer_id, category ORDER BY d, item_id))
                WHERE gap > 0 GROUP BY 1
                HAVING count(*) >= {int(min_gaps)} AND avg(same) >= {float(same_item_share)})""",
        """f_rb AS (
                SELECT customer_id, count(*) AS n, min(since / cycle) AS ratio, min(since - cycle) AS over
                FROM (SELECT customer_id, category, date_diff('day', max(d), CAST($cutoff AS DATE)) AS since
                      FROM rb_days GROUP BY 1, 2) JOIN rb_cycle USING (category)
                GROUP BY 1)""",
    ]
    return _Family(
        "f_rb",
        ctes,
        {
            "rebuy_categories": "coalesce(f_rb.n, 0)",
            "rebuy_overdue_ratio": "f_rb.ratio",
            "rebuy_overdue_days": "f_rb.over",
        },
    )


def _decay(age_days: str, h: int) -> str:
    return f"pow(0.5, {age_days} / {int(h)})"


def _recent_experience_family(half_lives: list[int]) -> _Family:
    # Exponentially decayed counts (half-life h days, age counted back from the cutoff) of purchase days, activity
    # days, returns and carts left without buying that item that day (stock-outs and second thoughts), and the
    # customer's own activity cadence: how many active days their usual rate would have had since the last one.
    age = _days("d")
    ctes = [
        """act_days AS (SELECT customer_id, CAST(ts AS DATE) AS d, bool_or(type = 'purchase') AS bought
                           FROM ev GROUP BY 1, 2)""",
        """missed AS (SELECT c.customer_id, CAST(c.ts AS DATE) AS d FROM ev c
                          WHERE c.type = 'cart' AND NOT EXISTS (
                              SELECT 1 FROM ev p WHERE p.type = 'purchase' AND p.customer_id = c.customer_id
                                AND p.item_id = c.item_id AND CAST(p.ts AS DATE) = CAST(c.ts AS DATE)))""",
    ]
    aggs = ["count(*) AS n_act", f"max({age}) AS first_age", f"min({age}) AS last_age"]
    for h in half_lives:
        aggs += [f"sum({_decay(age, h)}) FILTER (WHERE bought) AS pd_{h}", f"sum({_decay(age, h)}) AS ad_{h}"]
    ctes.append(f"f_act AS (SELECT customer_id, {', '.join(aggs)} FROM act_days GROUP BY 1)")
    ret = [f"sum({_decay(_days('ts'), h)}) AS r_{h}" for h in half_lives]
    ctes.append(f"f_ret AS (SELECT customer_id, {', '.join(ret)} FROM ev WHERE type = 'return' GROUP BY 1)")
    miss = [f"sum({_decay(age, h)}) AS m_{h}" for h in half_lives]
    ctes.append(f"f_miss AS (SELECT customer_id, {', '.join(miss)} FROM missed GROUP BY 1)")
    rate = "f_act.n_act / greatest(f_act.first_age, 1)"
    selects = {
        "activity_days_total": "coalesce(f_act.n_act, 0)",
        "activity_days_rate": rate,
        "activity_days_overdue": f"f_act.last_age * {rate}",
    }
    for h in half_lives:
        selects[f"purchase_days_decayed_{h}d"] = f"coalesce(f_act.pd_{h}, 0)"
        selects[f"activity_days_decayed_{h}d"] = f"coalesce(f_act.ad_{h}, 0)"
        selects[f"returns_decayed_{h}d"] = f"coalesce(f_ret.r_{h}, 0)"
        selects[f"missed_carts_decayed_{h}d"] = f"coalesce(f_miss.m_{h}, 0)"
    return _Family("f_act", ctes, selects, also_joined=["f_ret", "f_miss"])


def _tickets_family(windows: list[int], half_lives: list[int]) -> _Family:
    # Only what was known at the cutoff: resolution and satisfaction count once resolved_at < cutoff.
    aggs = [
        "count(*) AS n",
        "count(*) FILTER (WHERE resolved_at IS NULL OR resolved_at >= $cutoff) AS n_open",
        f"max({_days('opened_at')}) FILTER (WHERE resolved_at IS NULL OR resolved_at >= $cutoff) AS open_age",
        f"avg({_days('opened_at', 'resolved_at')}) FILTER (WHERE resolved_at < $cutoff) AS res_days",
        "avg(satisfaction) FILTER (WHERE resolved_at < $cutoff) AS sat",
        "max(opened_at) AS last_ts",
        *[f"count(*) FILTER (WHERE category = '{c}') AS c_{c}" for c in TICKET_CATEGORIES],
        *[f"count(*) FILTER (WHERE opened_at >= {_since(w)}) AS n_{w}" for w in windows],
        *[f"sum({_decay(_days('opened_at'), h)}) AS d_{h}" for h in half_lives],
        # a ticket still unresolved a week after opening hurts most (known only once that week has passed)
        *[
            f"coalesce(sum({_decay(_days('opened_at'), h)}) FILTER (WHERE (resolved_at IS NULL OR resolved_at >= "
            f"$cutoff OR resolved_at > opened_at + INTERVAL 7 DAY) AND opened_at < $cutoff - INTERVAL 7 DAY), 0) "
            f"AS u_{h}"
            for h in half_lives
        ],
    ]
    cte = f"f_tk AS (SELECT customer_id, {', '.join(aggs)} FROM tickets WHERE opened_at < $cutoff GROUP BY 1)"
    return _Family(
        "f_tk",
        [cte],
        {
            "tickets_total": "coalesce(f_tk.n, 0)",
            **{f"tickets_{w}d": f"coalesce(f_tk.n_{w}, 0)" for w in windows},
            **{f"tickets_{c}": f"coalesce(f_tk.c_{c}, 0)" for c in TICKET_CATEGORIES},
            "open_tickets": "coalesce(f_tk.n_open, 0)",
            "open_ticket_age_days": "f_tk.open_age",
            "resolution_days_mean": "f_tk.res_days",
            "ticket_satisfaction_mean": "f_tk.sat",
            "days_since_last_ticket": _days("f_tk.last_ts"),
            **{f"tickets_decayed_{h}d": f"coalesce(f_tk.d_{h}, 0)" for h in half_lives},
            **{f"slow_tickets_decayed_{h}d": f"coalesce(f_tk.u_{h}, 0)" for h in half_lives},
        },
    )


def _surveys_family() -> _Family:
    def last_two(col: str) -> str:
        return f"""{col}_ranked AS (
            SELECT customer_id, {col}, row_number() OVER (PARTITION BY customer_id ORDER BY ts DESC) AS rn
            FROM surveys WHERE ts < $cutoff AND {col} IS NOT NULL)"""

    cte = """f_sv AS (
        SELECT b.customer_id, any_value(b.last_ts) AS last_ts,
               max(n.nps) FILTER (WHERE n.rn = 1) AS nps_last,
               max(n.nps) FILTER (WHERE n.rn = 1) - max(n.nps) FILTER (WHERE n.rn = 2) AS nps_trend,
               max(c.csat) FILTER (WHERE c.rn = 1) AS csat_last,
               max(c.csat) FILTER (WHERE c.rn = 1) - max(c.csat) FILTER (WHERE c.rn = 2) AS csat_trend
        FROM (SELECT customer_id, max(ts) AS last_ts FROM surveys WHERE ts < $cutoff GROUP BY 1) b
        LEFT JOIN nps_ranked n ON n.customer_id = b.customer_id AND n.rn <= 2
        LEFT JOIN csat_ranked c ON c.customer_id = b.customer_id AND c.rn <= 2
        GROUP BY b.customer_id)"""
    return _Family(
        "f_sv",
        [last_two("nps"), last_two("csat"), cte],
        {
            "nps_last": "f_sv.nps_last",
            "nps_trend": "f_sv.nps_trend",
            "csat_last": "f_sv.csat_last",
            "csat_trend": "f_sv.csat_trend",
            "days_since_last_survey": _days("f_sv.last_ts"),
        },
    )


def _loyalty_family(expiry_days: int | None) -> _Family:
    cte = """f_ly AS (SELECT customer_id, sum(points_delta) AS balance, arg_max(tier_after, ts) AS tier,
                             max(ts) AS last_ts
                      FROM loyalty WHERE ts < $cutoff GROUP BY 1)"""
    fam = _Family(
        "f_ly",
        [cte],
        {
            "points_balance": "coalesce(f_ly.balance, 0)",
            "days_since_loyalty_activity": _days("f_ly.last_ts"),
            "loyalty_tier": "coalesce(f_ly.tier, 'none')",
        },
        categoricals={"loyalty_tier": list(LOYALTY_TIERS)},
    )
    if expiry_days is not None:  # points lapse `expiry_days` after the last points activity; null without points
        fam.selects["days_until_points_lapse"] = (
            f"CASE WHEN f_ly.balance > 0 THEN greatest({int(expiry_days)} - {_days('f_ly.last_ts')}, 0) END"
        )
    return fam


def _offers_family(ignored_after_days: int) -> _Family:
    cte = """f_of AS (SELECT customer_id, count(*) AS n, count(*) FILTER (WHERE redeemed_at < $cutoff) AS n_red,
                             max(sent_at) AS last_ts
                      FROM offers WHERE sent_at < $cutoff GROUP BY 1)"""
    # The latest offers not redeemed (by the cutoff) counted back to the last redeemed one, among offers sent at
    # least `ignored_after_days` before the cutoff (a newer one may still be redeemed).
    ignored = f"""f_ig AS (SELECT customer_id, count(*) FILTER (WHERE redeemed_since = 0) AS n
                  FROM (SELECT customer_id, sum(CASE WHEN redeemed_at < $cutoff THEN 1 ELSE 0 END) OVER (
                                   PARTITION BY customer_id ORDER BY sent_at DESC ROWS UNBOUNDED PRECEDING
                               ) AS redeemed_since
                        FROM offers WHERE sent_at < $cutoff - INTERVAL {int(ignored_after_days)} DAY)
                  GROUP BY 1)"""
    return _Family(
        "f_of",
        [cte, ignored],
        {
            "offers_received": "coalesce(f_of.n, 0)",
            "offers_redeemed": "coalesce(f_of.n_red, 0)",
            "offer_redemption_rate": "f_of.n_red / nullif(f_of.n, 0)",
            "days_since_last_offer": _days("f_of.last_ts"),
            "offers_ignored_in_a_row": "coalesce(f_ig.n, 0)",
        },
        also_joined=["f_ig"],
    )


def _customers_family(wh: Warehouse) -> _Family:
    fam = _Family(
        "f_cu",
        ["f_cu AS (SELECT * FROM customers WHERE signup_date < $cutoff)"],
        {"tenure_days": _days("f_cu.signup_date")},
    )
    if wh.has("customers", "birth_year"):
        fam.selects["age"] = "year($cutoff) - f_cu.birth_year"
    if wh.has("customers", "region"):
        fam.selects["region"] = "f_cu.region"
        # The region vocabulary is the whole table's, so every cutoff encodes regions identically.
        regions = wh.df("SELECT DISTINCT region FROM customers WHERE region IS NOT NULL ORDER BY 1")["region"]
        fam.categoricals["region"] = [str(r) for r in regions]
    if wh.has("customers", "preferred_channel"):
        fam.selects["preferred_channel"] = "f_cu.preferred_channel"
        fam.categoricals["preferred_channel"] = list(CHANNELS)
    return fam


def _families(wh: Warehouse, cfg: FeatureConfig) -> list[_Family]:
    families = [
        *_events_family(wh, cfg.windows_days),
        _recent_experience_family(cfg.decay_half_lives_days),
        _browsing_streak_family(),
        _channel_shift_family(cfg.channel_shift_days),
    ]
    if wh.has("products", "category"):
        families.append(_rebuy_family(cfg.rebuy_min_gaps, cfg.rebuy_same_item_share))
    if wh.has("customers"):
        families.append(_customers_family(wh))
    if wh.has("tickets"):
        families.append(_tickets_family(cfg.windows_days, cfg.decay_half_lives_days))
    if wh.has("surveys"):
        families.append(_surveys_family())
    if wh.has("loyalty"):
        families.append(_loyalty_family(cfg.points_expiry_days))
    if wh.has("offers"):
        families.append(_offers_family(cfg.offer_ignored_after_days))
    return families


def customer_features_sql(wh: Warehouse, cfg: FeatureConfig) -> tuple[str, dict[str, list[str]]]:
    """The feature query (parameter `$cutoff`) for the tables present, and the categorical vocabularies."""
    families = _families(wh, cfg)
    base = "SELECT DISTINCT customer_id FROM ev"
    if wh.has("customers"):
        base += " UNION SELECT customer_id FROM customers WHERE signup_date < $cutoff"
    ctes = [c for fam in families for c in fam.ctes] + [f"base AS ({base})"]
    categoricals = {k: v for fam in families for k, v in fam.categoricals.items()}
    selects = []
    for fam in families:
        for name, expr in fam.selects.items():
            selects.append(f"{expr} AS {name}" if name in categoricals else f"CAST({expr} AS DOUBLE) AS {name}")
    aliases = [a for fam in families for a in (fam.alias, *fam.also_joined)]
    joins = " ".join(f"LEFT JOIN {a} ON {a}.customer_id = base.customer_id" for a in aliases)
    sql = (
        f"WITH {', '.join(ctes)}\nSELECT base.customer_id, {', '.join(selects)}\n"
        f"FROM base {joins}\nORDER BY base.customer_id"
    )
    return sql, categoricals


def compute_customer_features(wh: Warehouse, cutoff: pd.Timestamp, cfg: FeatureConfig) -> pd.DataFrame:
    """One row per customer known before the cutoff: customer_id, numeric features and categoricals."""
    register_window_descriptions(cfg.windows_days)
    register_decay_descriptions(cfg.decay_half_lives_days)
    sql, categoricals = customer_features_sql(wh, cfg)
    df = wh.df(sql, {"cutoff": cutoff})
    df["customer_id"] = df["customer_id"].astype(str)
    for name, categories in categoricals.items():
        df[name] = pd.Categorical(df[name], categories=categories)
    return df
