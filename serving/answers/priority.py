"""Worth saving first: a CRM priority from the retention plan's own figure, the best offer's expected net value.

A customer whose best offer has a positive expected net value (P(churn) x CLV x uplift - cost, see
retention_plan.py) is worth saving, the highest value first; a consenting customer for whom no offer pays is likely
lost (low value or no expected effect), shown apart however risky; without marketing consent there is no offer to
send at all.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

SAVE = "save"
LIKELY_LOST = "likely_lost"
NO_CONSENT = "no_marketing_consent"
PRIORITY_TEXT = {
    SAVE: "worth saving: the best offer is expected to pay",
    LIKELY_LOST: "likely lost: low value or no expected effect",
    NO_CONSENT: "no marketing consent: no offer can be sent",
}


def priority(best_offer: dict[str, Any] | None, consented: bool) -> str:
    """save / likely_lost / no_marketing_consent for one customer with a CLV and offer effects."""
    if not consented:
        return NO_CONSENT
    return SAVE if best_offer is not None and best_offer["expected_net_value"] > 0 else LIKELY_LOST


def offer_value(best_offer: Any) -> float:
    """The best offer's expected net value (0 without one)."""
    return float(best_offer["expected_net_value"]) if isinstance(best_offer, dict) else 0.0


def worth_saving_first(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(customers to act on, likely lost) from rows with churn_probability, best_offer and priority columns.

    The first frame holds the customers worth saving, highest expected net value first, then the rest (no marketing
    consent, or no CLV) riskiest first; the second the likely lost, riskiest first.
    """
    ranked = rows.assign(_value=rows["best_offer"].map(offer_value))
    by_risk = ["churn_probability"]
    save = ranked[ranked["priority"] == SAVE].sort_values(["_value", *by_risk], ascending=False, kind="stable")
    rest = ranked[~ranked["priority"].isin([SAVE, LIKELY_LOST])].sort_values(by_risk, ascending=False, kind="stable")
    lost = ranked[ranked["priority"] == LIKELY_LOST].sort_values(by_risk, ascending=False, kind="stable")
    act = pd.concat([save, rest]).drop(columns="_value").reset_index(drop=True)
    return act, lost.drop(columns="_value").reset_index(drop=True)
