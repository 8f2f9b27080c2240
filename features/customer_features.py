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

from features.contract import CHANNELS, LOYALTY_TIERS, TICKET_CATEGORIES
from features.warehouse import Warehouse
from patron.config import FeatureConfig

_DEFAULT_WINDOWS: list[int] = FeatureConfig.model_fields["windows_days"].default

# Feature name -> plain-language phrase with a `{value}` placeholder, used to explain churn scores.
FEATURE_DESCRIPTIONS: dict[str, str] = {
    "days_since_last_purchase": "no purchase in {value:.0f} days",
    "days_since_first_purchase": "first purchase {value:.0f} days ago",
    "days_since_last_event": "no activity (views, carts, purchases) in {value:.0f} days",
    "orders_total": "{value:.0f} orders in total",
    "spend_total": "{value:.2f} spent in total",
    "avg_order_value": "average order worth {value:.2f}",
    "basket_size_mean": "{value:.1f} items per order on average",
    "item_breadth": "bought {value:.0f} different products",
    "category_breadth": "bought from {value:.0f} product categories",
    "gap_mean_days": "usually buys every {value:.0f} days",
    "gap_std_days": "time between purchases varies by {value:.0f} days",
    "recency_gap_ratio": "{value:.1f} times their usual time between purchases since the last one",
    "returns_rate": "returned {value:.0%} of the items bought",
    "view_to_purchase": "{value:.2f} purchases per product view",
    "views_total": "{value:.0f} product views in total",
    **{f"channel_share_{c}": f"{{value:.0%}} of purchases via {c}" for c in CHANNELS},
    "tenure_days": "customer for {value:.0f} days",
    "age": "{value:.0f} years old",
    "region": "lives in region {value}",
    "preferred_channel": "prefers the {value} channel",
    "tickets_total": "{value:.0f} support tickets in total",
    **{f"tickets_{c}": f"{{value:.0f}} support tickets about {c.replace('_', ' ')}" for c in TICKET_CATEGORIES},
    "open_tickets": "{value:.0f} unresolved support tickets",
    "open_ticket_age_days": "oldest unresolved ticket open for {value:.0f} days",
    "resolution_days_mean": "tickets took {value:.1f} days to resolve on average",
    "ticket_satisfaction_mean": "rated ticket handling {value:.1f} out of 5",
    "days_since_last_ticket": "last support ticket {value:.0f} days ago",
    "nps_last": "last NPS answer {value:.0f} out of 10",
    "nps_trend": "NPS changed by {value:+.0f} since the previous answer",
    "csat_last": "last satisfaction score {value:.0f} out of 5",
    "csat_trend": "satisfaction score changed by {value:+.0f} since the previous answer",
    "days_since_last_survey": "last survey answer {value:.0f} days ago",
    "loyalty_tier": "loyalty tier {value}",
    "points_balance": "{value:.0f} loyalty points",
    "days_since_loyalty_activity": "no loyalty-points activity in {value:.0f} days",
    "offers_received": "{value:.0f} retention offers received",
    "offers_redeemed": "{value:.0f} retention offers redeemed",
    "offer_redemption_rate": "redeemed {value:.0%} of offers received",
    "days_since_last_offer": "last offer {value:.0f} days ago",
}

_WINDOW_DESCRIPTIONS = {
    "orders_{w}d": "{{value:.0f}} orders in the last {w} days",
    "spend_{w}d": "{{value:.2f}} spent in the last {w} days",
    "views_{w}d": "{{value:.0f}} product views in the last {w} days",
    "orders_trend_{w}d": "{{value:+.0f}} orders in the last {w} days compared with the {w} days before",
    "spend_trend_{w}d": "{{value:+.2f}} spent in the last {w} days compared with the {w} days before",
    "tickets_{w}d": "{{value:.0f}} support tickets in the last {w} days",
}


# Features about one concept: their contributions to a churn score are summed into one reason, worded by the
# group's phrase (placeholders name member features; a member without a value: the top member's own phrase).
FEATURE_GROUPS: dict[str, str] = {
    "days_since_last_purchase": "purchase_recency", "gap_mean_days": "purchase_recency",
    "recency_gap_ratio": "purchase_recency",
    "tickets_total": "support_tickets", "days_since_last_ticket": "support_tickets",
    "open_tickets": "open_tickets", "open_ticket_age_days": "open_tickets",
    "resolution_days_mean": "ticket_handling", "ticket_satisfaction_mean": "ticket_handling",
    "nps_last": "nps", "nps_trend": "nps", "csat_last": "csat", "csat_trend": "csat",
    "offers_received": "offers", "offers_redeemed": "offers", "offer_redemption_rate": "offers",
    "points_balance": "loyalty_points", "days_since_loyalty_activity": "loyalty_points",
}
GROUP_PHRASES: dict[str, str] = {
    "purchase_recency": "no purchase in {days_since_last_purchase:.0f} days, usually every {gap_mean_days:.0f}",
    "support_tickets": "{tickets_total:.0f} support tickets, the last {days_since_last_ticket:.0f} days ago",
    "open_tickets": "{open_tickets:.0f} unresolved support tickets, the oldest open for "
                    "{open_ticket_age_days:.0f} days",
    "ticket_handling": "tickets took {resolution_days_mean:.1f} days to resolve, handling rated "
                       "{ticket_satisfaction_mean:.1f} out of 5",
    "nps": "last NPS answer {nps_last:.0f} out of 10 ({nps_trend:+.0f} since the previous answer)",
    "csat": "last satisfaction score {csat_last:.0f} out of 5 ({csat_trend:+.0f} since the previous answer)",
    "offers": "redeemed {offers_redeemed:.0f} of {offers_received:.0f} retention offers received",
    "loyalty_points": "{points_balance:.0f} loyalty points, no points activity in "
                      "{days_since_loyalty_activity:.0f} days",
}
_WINDOW_GROUPS = {
    "orders_{w}d": ("orders_{w}d", "{{orders_{w}d:.0f}} orders in the last {w} days "
                                   "({{orders_trend_{w}d:+.0f}} compared with the {w} days before)"),
    "orders_trend_{w}d": ("orders_{w}d", None),
    "spend_{w}d": ("spend_{w}d", "{{spend_{w}d:.2f}} spent in the last {w} days "
                                 "({{spend_trend_{w}d:+.2f}} compared with the {w} days before)"),
    "spend_trend_{w}d": ("spend_{w}d", None),
    "tickets_{w}d": ("support_tickets", None),
}


def register_window_descriptions(windows: list[int]) -> None:
    """Add FEATURE_DESCRIPTIONS, FEATURE_GROUPS and GROUP_PHRASES entries for the per-window features."""
    for w in windows:
        for name, phrase in _WINDOW_DESCRIPTIONS.items():
            FEATURE_DESCRIPTIONS.setdefault(name.format(w=w), phrase.format(w=w))
        for name, (group, phrase) in _WINDOW_GROUPS.items():
            FEATURE_GROUPS.setdefault(name.format(w=w), group.format(w=w))
            if phrase is not None:
                GROUP_PHRASES.setdefault(group.format(w=w), phrase.format(w=w))


register_window_descriptions(_DEFAULT_WINDOWS)

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


def _events_family(wh: Warehouse, windows: list[int]) -> list[_Family]:
    ctes = [
        """ev AS (SELECT customer_id, item_id, ts, type, quantity, unit_price, channel,
                         coalesce(order_id, event_id) AS order_key
                  FROM events WHERE ts < $cutoff)""",
        """orders AS (SELECT customer_id, order_key, min(ts) AS ts, sum(quantity) AS units,
                             sum(quantity * unit_price) AS value
                      FROM ev WHERE type = 'purchase' GROUP BY customer_id, order_key)""",
    ]
    order_aggs = ["count(*) AS n_orders", "sum(value) AS spend", "avg(value) AS aov", "avg(units) AS basket",
                  "max(ts) AS last_ts", "min(ts) AS first_ts"]
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
    orders = _Family("f_orders", ctes[:3], {
        "days_since_last_purchase": _days("f_orders.last_ts"),
        "days_since_first_purchase": _days("f_orders.first_ts"),
        "orders_total": "coalesce(f_orders.n_orders, 0)",
        "spend_total": "coalesce(f_orders.spend, 0)",
        "avg_order_value": "f_orders.aov",
        "basket_size_mean": "f_orders.basket",
    })
    for w in windows:
        orders.selects[f"orders_{w}d"] = f"coalesce(f_orders.n_{w}, 0)"
        orders.selects[f"spend_{w}d"] = f"coalesce(f_orders.s_{w}, 0)"
        orders.selects[f"orders_trend_{w}d"] = f"coalesce(f_orders.n_{w} - f_orders.n_prev_{w}, 0)"
        orders.selects[f"spend_trend_{w}d"] = f"coalesce(f_orders.s_{w} - f_orders.s_prev_{w}, 0)"
    activity = _Family("f_ev", [ctes[3]], {
        "days_since_last_event": _days("f_ev.last_event_ts"),
        "views_total": "coalesce(f_ev.n_views, 0)",
        "item_breadth": "coalesce(f_ev.n_items, 0)",
        "returns_rate": "f_ev.units_returned / nullif(f_ev.units_bought, 0)",
        "view_to_purchase": "f_ev.n_lines / nullif(f_ev.n_views, 0)",
        **{f"channel_share_{c}": f"f_ev.ch_{c} / nullif(f_ev.n_lines, 0)" for c in CHANNELS},
        **{f"views_{w}d": f"coalesce(f_ev.v_{w}, 0)" for w in windows},
    })
    gaps = _Family("f_gaps", [ctes[4]], {
        "gap_mean_days": "f_gaps.gap_mean",
        "gap_std_days": "f_gaps.gap_std",
        "recency_gap_ratio": f"{_days('f_orders.last_ts')} / nullif(f_gaps.gap_mean, 0)",
    })
    families = [orders, activity, gaps]
    if wh.has("products", "category"):
        families.append(_Family("f_cat", ["""f_cat AS (
            SELECT ev.customer_id, count(DISTINCT p.category) AS n_categories
            FROM ev JOIN products p USING (item_id) WHERE ev.type = 'purchase' GROUP BY ev.customer_id)"""],
            {"category_breadth": "coalesce(f_cat.n_categories, 0)"}))
    return families


def _tickets_family(windows: list[int]) -> _Family:
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
    ]
    cte = f"f_tk AS (SELECT customer_id, {', '.join(aggs)} FROM tickets WHERE opened_at < $cutoff GROUP BY 1)"
    return _Family("f_tk", [cte], {
        "tickets_total": "coalesce(f_tk.n, 0)",
        **{f"tickets_{w}d": f"coalesce(f_tk.n_{w}, 0)" for w in windows},
        **{f"tickets_{c}": f"coalesce(f_tk.c_{c}, 0)" for c in TICKET_CATEGORIES},
        "open_tickets": "coalesce(f_tk.n_open, 0)",
        "open_ticket_age_days": "f_tk.open_age",
        "resolution_days_mean": "f_tk.res_days",
        "ticket_satisfaction_mean": "f_tk.sat",
        "days_since_last_ticket": _days("f_tk.last_ts"),
    })


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
    return _Family("f_sv", [last_two("nps"), last_two("csat"), cte], {
        "nps_last": "f_sv.nps_last",
        "nps_trend": "f_sv.nps_trend",
        "csat_last": "f_sv.csat_last",
        "csat_trend": "f_sv.csat_trend",
        "days_since_last_survey": _days("f_sv.last_ts"),
    })


def _loyalty_family() -> _Family:
    cte = """f_ly AS (SELECT customer_id, sum(points_delta) AS balance, arg_max(tier_after, ts) AS tier,
                             max(ts) AS last_ts
                      FROM loyalty WHERE ts < $cutoff GROUP BY 1)"""
    return _Family("f_ly", [cte], {
        "points_balance": "coalesce(f_ly.balance, 0)",
        "days_since_loyalty_activity": _days("f_ly.last_ts"),
        "loyalty_tier": "coalesce(f_ly.tier, 'none')",
    }, categoricals={"loyalty_tier": list(LOYALTY_TIERS)})


def _offers_family() -> _Family:
    cte = """f_of AS (SELECT customer_id, count(*) AS n, count(*) FILTER (WHERE redeemed_at < $cutoff) AS n_red,
                             max(sent_at) AS last_ts
                      FROM offers WHERE sent_at < $cutoff GROUP BY 1)"""
    return _Family("f_of", [cte], {
        "offers_received": "coalesce(f_of.n, 0)",
        "offers_redeemed": "coalesce(f_of.n_red, 0)",
        "offer_redemption_rate": "f_of.n_red / nullif(f_of.n, 0)",
        "days_since_last_offer": _days("f_of.last_ts"),
    })


def _customers_family(wh: Warehouse) -> _Family:
    fam = _Family("f_cu", ["f_cu AS (SELECT * FROM customers WHERE signup_date < $cutoff)"],
                  {"tenure_days": _days("f_cu.signup_date")})
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


def _families(wh: Warehouse, windows: list[int]) -> list[_Family]:
    families = _events_family(wh, windows)
    if wh.has("customers"):
        families.append(_customers_family(wh))
    if wh.has("tickets"):
        families.append(_tickets_family(windows))
    if wh.has("surveys"):
        families.append(_surveys_family())
    if wh.has("loyalty"):
        families.append(_loyalty_family())
    if wh.has("offers"):
        families.append(_offers_family())
    return families


def customer_features_sql(wh: Warehouse, windows: list[int]) -> tuple[str, dict[str, list[str]]]:
    """The feature query (parameter `$cutoff`) for the tables present, and the categorical vocabularies."""
    families = _families(wh, windows)
    base = "SELECT DISTINCT customer_id FROM ev"
    if wh.has("customers"):
        base += " UNION SELECT customer_id FROM customers WHERE signup_date < $cutoff"
    ctes = [c for fam in families for c in fam.ctes] + [f"base AS ({base})"]
    categoricals = {k: v for fam in families for k, v in fam.categoricals.items()}
    selects = []
    for fam in families:
        for name, expr in fam.selects.items():
            selects.append(f"{expr} AS {name}" if name in categoricals else f"CAST({expr} AS DOUBLE) AS {name}")
    joins = " ".join(f"LEFT JOIN {fam.alias} ON {fam.alias}.customer_id = base.customer_id" for fam in families)
    sql = (f"WITH {', '.join(ctes)}\nSELECT base.customer_id, {', '.join(selects)}\n"
           f"FROM base {joins}\nORDER BY base.customer_id")
    return sql, categoricals


def compute_customer_features(wh: Warehouse, cutoff: pd.Timestamp, windows: list[int]) -> pd.DataFrame:
    """One row per customer known before the cutoff: customer_id, numeric features and categoricals."""
    register_window_descriptions(windows)
    sql, categoricals = customer_features_sql(wh, windows)
    df = wh.df(sql, {"cutoff": cutoff})
    df["customer_id"] = df["customer_id"].astype(str)
    for name, categories in categoricals.items():
        df[name] = pd.Categorical(df[name], categories=categories)
    return df
