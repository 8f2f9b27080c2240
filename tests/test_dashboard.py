"""GET /dashboard end to end in headless Chromium: log in, the customers worth saving first, the likely lost apart,
the filters, a customer's detail, the campaigns page's loyalty KPIs."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from tests.test_retention_plan import plan_server  # noqa: F401 - the server with CLV and uplift models

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "dashboard.png"


@pytest.mark.integration
def test_dashboard_needs_a_key_and_serves_the_login_form(plan_server) -> None:  # noqa: F811
    with plan_server.client(timeout=120) as client:
        assert client.get("/dashboard").status_code == 200
        page = client.get("/dashboard").text
    assert 'id="at-risk"' in page and "<svg" in page and "http://" not in page.replace(plan_server.url, "")
    with plan_server.client(timeout=30) as client:
        client.headers.clear()
        assert client.get("/dashboard/login").status_code == 200
        if plan_server.headers:  # access control is on: no key, no page; a wrong one is refused too
            assert client.get("/dashboard").status_code == 401
            refused = client.post("/dashboard/login", data={"api_key": "wrong"}, follow_redirects=True)
            assert refused.status_code == 401
        blank = client.post("/dashboard/login", data={"api_key": " "})
        assert blank.status_code == 400 and "api_key" in blank.text


@pytest.mark.integration
def test_dashboard_in_a_browser(plan_server, tmp_path) -> None:  # noqa: F811
    sync_api = pytest.importorskip("playwright.sync_api", reason="the test extra installs playwright")
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (make install / .ci/run install it with apt-get)")
    key = plan_server.headers.get("Authorization", "Bearer no-access-control").removeprefix("Bearer ")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(plan_server.url + "/dashboard/login")
        page.fill("#api_key", key)
        started = time.monotonic()
        page.click("button[type=submit]")
        page.wait_for_selector("#at-risk tr.customer", timeout=120_000)
        first_load_s = time.monotonic() - started
        cookie = next(c for c in page.context.cookies() if c["name"] == "patron_api_key")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        rows = page.locator("#at-risk tr.customer")
        total = rows.count()
        assert total > 0 and page.locator("#plan-chart polyline").count() == 1
        # worth saving first: the main table starts with positive expected net values, highest first
        values = [v for v in (r.get_attribute("data-value") for r in rows.all()) if v]
        assert values and rows.first.get_attribute("data-value") == values[0]
        assert float(values[0]) > 0 and values == sorted(values, key=float, reverse=True)
        assert all(float(v) > 0 for v in values)
        lost = page.locator("#likely-lost tr.customer")
        assert "Likely lost: low value or no expected effect" in page.inner_text("#likely-lost-title")
        assert lost.count() > 0 and all(not r.get_attribute("data-value") for r in lost.all())
        lost_p = [
            float(t.rstrip("%")) for t in page.locator("#likely-lost tr.customer td:nth-child(2)").all_inner_texts()
        ]
        assert lost_p == sorted(lost_p, reverse=True)  # the likely lost: riskiest first
        offers = [o for o in page.locator("#offer option").all_inner_texts() if o != "all"]
        assert offers
        page.select_option("#offer", offers[0])
        offered = page.locator("#at-risk tr.customer:visible td:nth-child(6)").all_inner_texts()
        assert offered and set(offered) == {offers[0]} and int(page.inner_text("#shown")) == len(offered)
        page.select_option("#offer", "")
        channels = [c for c in page.locator("#channel option").all_inner_texts() if c != "all"]
        page.select_option("#channel", channels[0])
        assert set(page.locator("#at-risk tr.customer:visible td:nth-child(8)").all_inner_texts()) == {channels[0]}
        assert "channel=" in page.url
        page.select_option("#channel", "")
        assert page.locator("#rfm-grid rect").count() == 25
        tiers = [t for t in page.locator("#tier option").all_inner_texts() if t != "all"]
        counts = {}
        for tier in tiers:
            page.select_option("#tier", tier)
            counts[tier] = page.locator("#at-risk tr.customer:visible").count()
            assert int(page.inner_text("#shown")) == counts[tier]
            assert all(
                t == tier for t in page.locator("#at-risk tr.customer:visible td:nth-child(3)").all_inner_texts()
            )
        assert sum(counts.values()) == total and any(0 < n < total for n in counts.values()), counts
        page.select_option("#tier", "")
        first = page.locator("#at-risk tr.customer").first
        customer = first.get_attribute("data-id")
        first.click()
        page.wait_for_selector("#detail-title")
        assert page.inner_text("#detail-title") == customer
        assert page.locator("#detail .reasons li").count() >= 1 and page.locator("#detail .history tr").count() > 1
        assert "CLV:" in page.inner_text("#detail")
        gone = lost.first.get_attribute("data-id")
        lost.first.click()
        page.wait_for_function(f"document.getElementById('detail-title')?.innerText === {gone!r}")
        started = time.monotonic()
        page.reload()
        page.wait_for_selector("#at-risk tr.customer")
        reload_s = time.monotonic() - started
        page.locator("#at-risk tr.customer").first.click()
        page.wait_for_selector("#detail-title")
        page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=False)
        page.click("#campaigns-link")  # the campaigns page: loyalty KPIs per month and per segment
        page.wait_for_selector("#kpi-months tbody tr", timeout=60_000)
        months = page.locator("#kpi-months tbody tr td:nth-child(1)").all_inner_texts()
        assert (
            months
            and months == sorted(months)
            and all(m[4] == "-" and m[:7].replace("-", "").isdigit() for m in months)
        )
        stages = set(page.locator("#kpi-segments tbody tr td:nth-child(1)").all_inner_texts())
        assert stages and stages <= {"new", "active", "at_risk", "lapsed", "unknown"}
        rates = [t for t in page.locator("#kpi-months tbody td").all_inner_texts() if t.endswith("%")]
        assert rates and all(0.0 <= float(t.rstrip("%")) <= 100.0 for t in rates)
        page.screenshot(path=str(tmp_path / "dashboard-campaigns.png"), full_page=True)
        browser.close()
    assert (tmp_path / "dashboard.png").stat().st_size > 10_000
    if os.environ.get("PATRON_UPDATE_SCREENSHOT"):  # refresh docs/dashboard*.png on request, never as a side effect
        shutil.copy2(tmp_path / "dashboard.png", SCREENSHOT)
        shutil.copy2(tmp_path / "dashboard-campaigns.png", SCREENSHOT.with_name("dashboard-campaigns.png"))
    print(f"dashboard: first load {first_load_s:.2f}s, reload {reload_s:.2f}s, {total} customers listed")
    assert reload_s < 2.0  # precomputed per champion: later loads only render
