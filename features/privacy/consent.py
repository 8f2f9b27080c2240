"""Customer consent from the contract's `consent` table: who refused what (no record means no refusal)."""

from __future__ import annotations

from typing import Literal

from features.tables.store import read_table
from patron.config import Settings


def consent_refusals(settings: Settings, purpose: Literal["personalization", "marketing"]) -> frozenset[str]:
    """Customers whose latest consent record refuses `purpose` (no consent table or no record: no refusal)."""
    consent = read_table(settings.tables_dir, "consent")
    if consent is None or purpose not in consent:
        return frozenset()
    latest = consent.sort_values("updated_at").drop_duplicates("customer_id", keep="last")
    return frozenset(latest.loc[~latest[purpose].astype(bool), "customer_id"].astype(str))
