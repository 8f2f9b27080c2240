"""Plain-language phrases of the customer features and their groups, used to word churn-score reasons."""

from __future__ import annotations

from features.tables.contract import CHANNELS, TICKET_CATEGORIES
from patron.config import FeatureConfig

_DEFAULT_WINDOWS: list[int] = FeatureConfig.model_fields["windows_days"].default
_DEFAULT_HALF_LIVES: list[int] = FeatureConfig.model_fields["decay_half_lives_days"].default

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
    "activity_days_total": "active (views, carts, purchases) on {value:.0f} days",
    "activity_days_rate": "active on {value:.0%} of days since the first activity",
    "activity_days_overdue": "{value:.1f} usual active days missed since the last activity",
    "view_days_since_purchase": "viewed products on {value:.0f} days without buying since the last purchase",
    "channel_shift": "recent activity {value:.0%} away from the customer's earlier channel mix",
    "offers_ignored_in_a_row": "ignored the last {value:.0f} retention offers",
    "days_until_points_lapse": "loyalty points lapse in {value:.0f} days without points activity",
    "rebuy_categories": "regularly re-buys from {value:.0f} product categories",
    "rebuy_overdue_ratio": "at least {value:.1f} times the usual re-buy interval since the last purchase, in every "
    "regularly re-bought category",
    "rebuy_overdue_days": "{value:+.0f} days against the usual re-buy date, in the least overdue regularly "
    "re-bought category",
}

# Feature name -> phrase for a customer without a value, where "no <feature> on record" would mislead.
MISSING_PHRASES: dict[str, str] = dict.fromkeys(
    ("rebuy_overdue_ratio", "rebuy_overdue_days"), "buys nothing that customers re-buy regularly"
)

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
    "days_since_last_purchase": "purchase_recency",
    "gap_mean_days": "purchase_recency",
    "recency_gap_ratio": "purchase_recency",
    "tickets_total": "support_tickets",
    "days_since_last_ticket": "support_tickets",
    "open_tickets": "open_tickets",
    "open_ticket_age_days": "open_tickets",
    "resolution_days_mean": "ticket_handling",
    "ticket_satisfaction_mean": "ticket_handling",
    "nps_last": "nps",
    "nps_trend": "nps",
    "csat_last": "csat",
    "csat_trend": "csat",
    "offers_received": "offers",
    "offers_redeemed": "offers",
    "offer_redemption_rate": "offers",
    "offers_ignored_in_a_row": "offers",
    "points_balance": "loyalty_points",
    "days_since_loyalty_activity": "loyalty_points",
    "rebuy_categories": "rebuy",
    "rebuy_overdue_ratio": "rebuy",
    "rebuy_overdue_days": "rebuy",
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
    "offers": "redeemed {offers_redeemed:.0f} of {offers_received:.0f} retention offers received, ignored the last "
    "{offers_ignored_in_a_row:.0f} in a row",
    "loyalty_points": "{points_balance:.0f} loyalty points, no points activity in "
    "{days_since_loyalty_activity:.0f} days",
    "rebuy": "at least {rebuy_overdue_ratio:.1f} times the usual re-buy interval since the last purchase, in each of "
    "{rebuy_categories:.0f} regularly re-bought categories",
}
_WINDOW_GROUPS = {
    "orders_{w}d": (
        "orders_{w}d",
        "{{orders_{w}d:.0f}} orders in the last {w} days "
        "({{orders_trend_{w}d:+.0f}} compared with the {w} days before)",
    ),
    "orders_trend_{w}d": ("orders_{w}d", None),
    "spend_{w}d": (
        "spend_{w}d",
        "{{spend_{w}d:.2f}} spent in the last {w} days ({{spend_trend_{w}d:+.2f}} compared with the {w} days before)",
    ),
    "spend_trend_{w}d": ("spend_{w}d", None),
    "tickets_{w}d": ("support_tickets", None),
}


# Decayed counts: the value is a sum of 0.5 ** (age / half-life) over the records.
_DECAY_DESCRIPTIONS = {
    "purchase_days_decayed_{h}d": ("purchase_recency", "{{value:.1f}} recent purchase days (half-life {h} days)"),
    "activity_days_decayed_{h}d": ("activity", "{{value:.1f}} recent active days (half-life {h} days)"),
    "returns_decayed_{h}d": ("returns", "{{value:.1f}} recent returns (half-life {h} days)"),
    "missed_carts_decayed_{h}d": (
        "missed_carts",
        "{{value:.1f}} recent carts left without buying (half-life {h} days)",
    ),
    "tickets_decayed_{h}d": ("support_tickets", "{{value:.1f}} recent support tickets (half-life {h} days)"),
    "slow_tickets_decayed_{h}d": (
        "open_tickets",
        "{{value:.1f}} recent tickets unresolved after a week (half-life {h} days)",
    ),
}
FEATURE_GROUPS.update(
    {"activity_days_total": "activity", "activity_days_rate": "activity", "activity_days_overdue": "activity"}
)


def register_decay_descriptions(half_lives: list[int]) -> None:
    """Add FEATURE_DESCRIPTIONS and FEATURE_GROUPS entries for the decayed-count features."""
    for h in half_lives:
        for name, (group, phrase) in _DECAY_DESCRIPTIONS.items():
            FEATURE_DESCRIPTIONS.setdefault(name.format(h=h), phrase.format(h=h))
            FEATURE_GROUPS.setdefault(name.format(h=h), group)


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
register_decay_descriptions(_DEFAULT_HALF_LIVES)
