"""The data contract: Patron's canonical tables, their columns, keys and allowed values, as pandera schemas."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandera.pandas as pa

EVENT_TYPES = ("view", "cart", "purchase", "return")
CHANNELS = ("online", "store", "app")
TICKET_CATEGORIES = ("quality", "price", "return_exchange", "delivery", "stock_out", "staff", "other")
LOYALTY_TIERS = ("none", "bronze", "silver", "gold", "platinum")
OFFER_TYPES = ("discount_voucher", "free_delivery", "double_points", "personal_call")

TS = "datetime64[ns]"


@dataclass(frozen=True)
class Table:
    """One contract table: its key, its references to other tables and its pandera schema."""

    name: str
    key: tuple[str, ...]
    columns: dict[str, pa.Column]
    references: dict[str, str] = field(default_factory=dict)  # column -> referenced table
    mandatory: bool = False
    description: str = ""

    def schema(self, known: dict[str, set[str]] | None = None) -> pa.DataFrameSchema:
        """Schema of this table; `known` maps a referenced table to its key values (foreign-key checks)."""
        columns = dict(self.columns)
        for column, table in self.references.items():
            if known and known.get(table) is not None:
                allowed = known[table]
                col = columns[column]
                columns[column] = col.set_checks(
                    [
                        *col.checks,
                        pa.Check(
                            lambda s, a=allowed: s.isin(a),
                            element_wise=False,
                            error=f"unknown {column} (not in {table})",
                        ),
                    ]
                )
        unique = list(self.key) if self.key else None
        return pa.DataFrameSchema(
            columns,
            name=self.name,
            coerce=True,
            strict="filter",
            unique=unique,
            report_duplicates="exclude_first",
        )


def _id(**kw) -> pa.Column:
    return pa.Column(str, pa.Check.str_length(min_value=1), nullable=False, **kw)


def _ts(nullable: bool = False) -> pa.Column:
    return pa.Column(TS, nullable=nullable)


def _opt_str() -> pa.Column:
    return pa.Column(str, nullable=True, required=False)


TABLES: dict[str, Table] = {
    t.name: t
    for t in [
        Table(
            "customers",
            ("customer_id",),
            {
                "customer_id": _id(),
                "signup_date": _ts(),
                "region": _opt_str(),
                "birth_year": pa.Column("Int64", pa.Check.in_range(1900, 2020), nullable=True, required=False),
                "loyalty_tier": pa.Column(str, pa.Check.isin(LOYALTY_TIERS), nullable=True, required=False),
                "preferred_channel": pa.Column(str, pa.Check.isin(CHANNELS), nullable=True, required=False),
            },
            description="One row per customer known to the retailer.",
        ),
        Table(
            "products",
            ("item_id",),
            {
                "item_id": _id(),
                "name": _opt_str(),
                "category": pa.Column(str, nullable=False),
                "department": _opt_str(),
                "brand": _opt_str(),
                "unit_price": pa.Column(float, pa.Check.ge(0), nullable=True, required=False),
                "in_stock": pa.Column(bool, nullable=False),
                "launched_at": pa.Column(TS, nullable=True, required=False),
            },
            description="The catalogue; `in_stock` false items are never recommended.",
        ),
        Table(
            "events",
            ("event_id",),
            {
                "event_id": _id(),
                "customer_id": _id(),
                "item_id": _id(),
                "ts": _ts(),
                "type": pa.Column(str, pa.Check.isin(EVENT_TYPES), nullable=False),
                "quantity": pa.Column("Int64", pa.Check.ge(1), nullable=False),
                "unit_price": pa.Column(float, pa.Check.ge(0), nullable=True),
                "channel": pa.Column(str, pa.Check.isin(CHANNELS), nullable=False),
                "order_id": pa.Column(str, nullable=True),
            },
            references={"customer_id": "customers", "item_id": "products"},
            mandatory=True,
            description="Views, carts, purchases and returns; the only mandatory table.",
        ),
        Table(
            "tickets",
            ("ticket_id",),
            {
                "ticket_id": _id(),
                "customer_id": _id(),
                "opened_at": _ts(),
                "resolved_at": _ts(nullable=True),
                "category": pa.Column(str, pa.Check.isin(TICKET_CATEGORIES), nullable=False),
                "satisfaction": pa.Column("Int64", pa.Check.in_range(1, 5), nullable=True),
            },
            references={"customer_id": "customers"},
            description="Complaints and service contacts.",
        ),
        Table(
            "surveys",
            ("customer_id", "ts"),
            {
                "customer_id": _id(),
                "ts": _ts(),
                "nps": pa.Column("Int64", pa.Check.in_range(0, 10), nullable=True),
                "csat": pa.Column("Int64", pa.Check.in_range(1, 5), nullable=True),
            },
            references={"customer_id": "customers"},
            description="Survey answers: NPS 0-10 and CSAT 1-5.",
        ),
        Table(
            "loyalty",
            ("customer_id", "ts"),
            {
                "customer_id": _id(),
                "ts": _ts(),
                "points_delta": pa.Column("Int64", nullable=False),
                "tier_after": pa.Column(str, pa.Check.isin(LOYALTY_TIERS), nullable=False),
            },
            references={"customer_id": "customers"},
            description="Loyalty-points ledger: earned (positive), redeemed or expired (negative).",
        ),
        Table(
            "offers",
            ("offer_id",),
            {
                "offer_id": _id(),
                "customer_id": _id(),
                "sent_at": _ts(),
                "offer_type": pa.Column(str, nullable=False),
                "cost": pa.Column(float, pa.Check.ge(0), nullable=False),
                "randomized": pa.Column(bool, nullable=False),
                "redeemed_at": _ts(nullable=True),
            },
            references={"customer_id": "customers"},
            description="Retention offers sent; `randomized` marks offers of a randomised campaign.",
        ),
        Table(
            "consent",
            ("customer_id",),
            {
                "customer_id": _id(),
                "personalization": pa.Column(bool, nullable=False),
                "marketing": pa.Column(bool, nullable=False),
                "updated_at": _ts(),
            },
            references={"customer_id": "customers"},
            description="Latest consent per customer; no row means no recorded refusal.",
        ),
    ]
}

# Referenced tables are validated first so that their keys can check the tables that point at them.
INGEST_ORDER = ("customers", "products", "events", "tickets", "surveys", "loyalty", "offers", "consent")
