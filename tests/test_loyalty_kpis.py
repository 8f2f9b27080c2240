"""Loyalty KPIs of the campaigns page: participation, repurchase, points and offer redemption, hand-computed."""

from __future__ import annotations

import pandas as pd
import pytest

from features.tables.store import write_table
from serving.dashboard.campaigns_view import render_campaigns
from serving.dashboard.loyalty_kpis import loyalty_kpis
from tests.conftest import small_workspace

T = pd.Timestamp


@pytest.fixture
def settings(tmp_path):
    settings = small_workspace(tmp_path).settings
    tables = settings.tables_dir
    write_table(
        pd.DataFrame(
            {
                "customer_id": ["a", "a", "a", "b", "b", "c", "c"],
                "ts": [
                    T("2026-01-03"),
                    T("2026-01-03 18:00"),
                    T("2026-01-10"),
                    T("2026-01-05"),
                    T("2026-02-02"),
                    T("2026-02-03"),
                    T("2025-01-01"),
                ],  # fmt: skip
                "type": ["purchase", "purchase", "purchase", "purchase", "purchase", "view", "purchase"],
            }
        ),
        tables,
        "events",
    )
    write_table(
        pd.DataFrame(
            {
                "customer_id": ["a", "b", "a", "b"],
                "ts": [T("2026-01-03"), T("2026-01-05"), T("2026-01-20"), T("2026-02-02")],
                "points_delta": [100, 50, -30, 20],
                "tier_after": ["bronze", "none", "bronze", "bronze"],
            }
        ),
        tables,
        "loyalty",
    )
    write_table(
        pd.DataFrame(
            {
                "customer_id": ["a", "b", "b"],
                "sent_at": [T("2026-01-02"), T("2026-01-02"), T("2026-02-27")],
                "redeemed_at": [T("2026-01-15"), pd.NaT, T("2026-03-02")],  # the last one after the cutoff
            }
        ),
        tables,
        "offers",
    )
    return settings


def test_kpis_per_month_and_per_segment(settings) -> None:
    stages = pd.Series({"a": "active", "b": "lapsed", "c": "lapsed"})
    monthly, by_segment = loyalty_kpis(settings, T("2026-03-01"), stages)
    assert list(monthly.index) == ["2026-01", "2026-02"]  # 2025-01 is outside the 12 months, views are no purchase
    jan, feb = monthly.loc["2026-01"], monthly.loc["2026-02"]
    assert jan["buyers"] == 2 and jan["participation"] == 0.5  # b's tier was "none" in January
    assert jan["repurchase_rate"] == 0.5  # a bought on two days (two orders on 3 January are one day)
    assert jan["points_redemption_rate"] == pytest.approx(30 / 150)
    assert jan["offer_redemption_rate"] == 0.5
    assert feb["buyers"] == 1 and feb["participation"] == 1.0 and feb["repurchase_rate"] == 0.0
    assert feb["points_redemption_rate"] == 0.0 and feb["offer_redemption_rate"] == 0.0  # redeemed after the cutoff
    # per segment over the last 3 months (all of the window): b bought on two days, in January and February
    assert by_segment.loc["active", "buyers"] == 1 and by_segment.loc["lapsed", "buyers"] == 1
    assert by_segment.loc["lapsed", "repurchase_rate"] == 1.0 and by_segment.loc["lapsed", "participation"] == 1.0
    assert by_segment.loc["active", "points_redemption_rate"] == pytest.approx(0.3)
    assert by_segment.loc["lapsed", "offer_redemption_rate"] == 0.0


def test_a_month_under_way_is_marked(settings) -> None:
    monthly, _ = loyalty_kpis(settings, T("2026-02-10"), pd.Series({"a": "active"}))
    assert list(monthly.index) == ["2026-01", "2026-02 (to 10 Feb)"]


def test_the_page_shows_the_kpis_and_a_readout(settings) -> None:
    monthly, by_segment = loyalty_kpis(settings, T("2026-03-01"), pd.Series({"a": "active", "b": "lapsed"}))
    page = render_campaigns(settings, monthly, by_segment, None)
    assert 'id="kpi-months"' in page and "2026-01" in page and "50.0%" in page and "<h2>Campaigns</h2>" not in page
    group = {
        "group": "discount_voucher to at_risk/high",
        "treatment": 400,
        "holdout": 100,
        "retained": {"effect": 6.1, "ci": [2.3, 9.8]},
        "repurchased": {"effect": 1.5, "ci": [-1.0, 4.0]},
        "redemption_rate": 0.25,
        "expected_net_value": 1500.0,
        "realised_net_value": 1840.0,
        "verdict": "discount_voucher to at_risk/high: +6.1 pts retention, 95% CI [+2.3, +9.8], net +1,840",
    }
    readout = {"campaign": {"id": "spring", "name": "Spring"}, "window": {"end": "2026-05-01"}, "provisional": True}
    campaigns = [{"id": "spring", "name": "Spring", "sent_at": "2026-03-01T00:00:00", "treatment": 400,
                  "holdout": 100, "spend": 2000.0, "expected_net_value": 1500.0}]  # fmt: skip
    page = render_campaigns(settings, monthly, by_segment, campaigns, {**readout, "by_offer": [group]})
    assert 'data-id="spring"' in page and "Readout: Spring" in page and "provisional" in page
    assert "+6.1 [+2.3, +9.8]" in page and "+1840 (+1500)" in page and group["verdict"] in page
    empty = render_campaigns(settings, monthly, by_segment, [])
    assert 'id="no-campaigns"' in empty
