"""The real BentoML server over a small trained workspace, exercised over HTTP."""

from __future__ import annotations

import time

import httpx
import numpy as np
import pytest
from mlflow import MlflowClient

from features.tables.store import read_table
from serving.champions.load import load_recommender_champion
from tests.conftest import Server, purchases, start_patron_server, stop_server

pytestmark = pytest.mark.integration


def post(server: Server, path: str, body: dict) -> httpx.Response:
    with server.client(timeout=30) as http:
        return http.post(path, json=body)


def champion_version(server: Server, model: str) -> str:
    s = server.workspace.settings
    name = s.tracking.recommender_model if model == "recommender" else s.tracking.churn_model
    client = MlflowClient(tracking_uri=s.tracking_uri, registry_uri=s.tracking_uri)  # not the process-wide URIs
    return str(client.get_model_version_by_alias(name, s.tracking.champion_alias).version)


def products(server: Server):
    return read_table(server.workspace.settings.tables_dir, "products")


def busy_customers(server: Server, n: int) -> list[str]:
    return purchases(server.workspace.settings)["customer_id"].value_counts().index[:n].tolist()


def test_health_endpoints_after_start(patron_server):
    assert httpx.get(patron_server.url + "/readyz").status_code == 200
    assert httpx.get(patron_server.url + "/livez").status_code == 200
    print(f"\nserver start-up to /readyz 200: {patron_server.startup_s:.1f}s")


def test_recommendations_exclude_purchases_and_out_of_stock_and_carry_the_champion_version(
    patron_server, refusing_customer
):
    bought = purchases(patron_server.workspace.settings).groupby("customer_id")["item_id"].agg(set)
    p = products(patron_server)
    out_of_stock = set(p.loc[~p["in_stock"], "item_id"])
    assert out_of_stock
    version = champion_version(patron_server, "recommender")
    personalised = 0
    for customer in [c for c in busy_customers(patron_server, 12) if c != refusing_customer]:
        body = post(patron_server, "/recommend", {"customer_id": customer, "k": 100}).json()
        ids = [i["item_id"] for i in body["items"]]
        assert ids and len(ids) == len(set(ids)) <= 100
        rebuys = {i["item_id"] for i in body["items"] if i["reason"] == "time to restock"}
        assert not (set(ids) - rebuys) & bought[customer], "an already purchased item was recommended"
        assert not set(ids) & out_of_stock, "an out-of-stock item was recommended"
        assert body["model_version"] == version and body["customer_id"] == customer
        if not body["fallback"]:
            personalised += 1
            assert [i["score"] for i in body["items"]] == sorted((i["score"] for i in body["items"]), reverse=True)
            assert all(i["reason"] for i in body["items"])
    assert personalised > 0


def test_purchased_items_may_come_back_when_not_excluded(patron_server, refusing_customer):
    customer = next(c for c in busy_customers(patron_server, 5) if c != refusing_customer)
    with_bought = post(patron_server, "/recommend", {"customer_id": customer, "k": 100, "exclude_purchased": False})
    without = post(patron_server, "/recommend", {"customer_id": customer, "k": 100})
    assert with_bought.status_code == without.status_code == 200
    bought = set(purchases(patron_server.workspace.settings).query("customer_id == @customer")["item_id"])
    assert {i["item_id"] for i in with_bought.json()["items"]} & bought


def test_unknown_customer_gets_popular_in_stock_items_in_popularity_order(patron_server):
    body = post(patron_server, "/recommend", {"customer_id": "no-such-customer", "k": 15}).json()
    assert body["fallback"] is True
    recommender, _ = load_recommender_champion(patron_server.workspace.settings)
    p = products(patron_server)
    expected = recommender.popular(15, allowed=set(p.loc[p["in_stock"], "item_id"]))
    assert [i["item_id"] for i in body["items"]] == [i for i, _ in expected]
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True) and len(scores) == 15
    assert all(i["reason"].startswith("popular in ") for i in body["items"])


def test_customer_without_personalisation_consent_gets_fallback(patron_server, refusing_customer):
    recommender, _ = load_recommender_champion(patron_server.workspace.settings)
    assert recommender.knows_customer(refusing_customer)
    body = post(patron_server, "/recommend", {"customer_id": refusing_customer, "k": 5}).json()
    assert body["fallback"] is True
    bought = set(purchases(patron_server.workspace.settings).query("customer_id == @refusing_customer")["item_id"])
    assert not {i["item_id"] for i in body["items"]} & bought


def test_categories_filter_is_honoured(patron_server):
    p = products(patron_server)
    wanted = sorted(p["category"].astype(str).unique())[:2]
    category_of = dict(zip(p["item_id"], p["category"].astype(str)))
    for customer in busy_customers(patron_server, 3) + ["no-such-customer"]:
        body = post(patron_server, "/recommend", {"customer_id": customer, "k": 20, "categories": wanted}).json()
        assert body["items"] and {category_of[i["item_id"]] for i in body["items"]} <= set(wanted)


def test_similar_items_are_in_stock_and_exclude_the_item(patron_server):
    p = products(patron_server)
    item = purchases(patron_server.workspace.settings)["item_id"].value_counts().index[0]
    body = post(patron_server, "/similar_items", {"item_id": item, "k": 10}).json()
    ids = [i["item_id"] for i in body["items"]]
    assert body["item_id"] == item and len(ids) == 10 and item not in ids
    assert set(ids) <= set(p.loc[p["in_stock"], "item_id"])
    assert body["model_version"] == champion_version(patron_server, "recommender")


def test_unknown_item_is_a_404_naming_it(patron_server):
    r = post(patron_server, "/similar_items", {"item_id": "no-such-item"})
    assert r.status_code == 404 and "no-such-item" in r.text


def test_churn_scores_are_probabilities_ordered_with_tiers(patron_server):
    settings = patron_server.workspace.settings
    customers = busy_customers(patron_server, 300)
    body = post(patron_server, "/churn", {"customer_ids": customers + ["no-such-customer"]}).json()
    assert body["model_version"] == champion_version(patron_server, "churn")
    scores = body["scores"]
    assert [s["customer_id"] for s in scores] == customers + ["no-such-customer"]
    assert scores[-1] == {
        "customer_id": "no-such-customer",
        "churn_probability": None,
        "risk_tier": None,
        "reasons": [],
        "known": False,
        "segment": None,
        "clv": None,
        "best_offer": None,
        "priority": None,
    }
    known = [s for s in scores if s["known"]]
    assert len(known) == len(customers)
    bounds = settings.churn.risk_tiers
    by_p = sorted(known, key=lambda s: s["churn_probability"])
    assert all(0.0 <= s["churn_probability"] <= 1.0 for s in known)
    tier_bounds = [bounds[s["risk_tier"]] for s in by_p]
    assert tier_bounds == sorted(tier_bounds), "a riskier tier came with a lower probability"
    assert all(s["risk_tier"] == settings.churn.tier(s["churn_probability"]) for s in known)
    for s in known:
        contributions = [r["contribution"] for r in s["reasons"]]
        assert len(contributions) <= 3 and all(c > 0 for c in contributions)
        assert contributions == sorted(contributions, reverse=True)
        assert all(r["text"] and r["feature"] for r in s["reasons"])
    assert any(s["reasons"] for s in known)


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/recommend", {"customer_id": ["a"]}, "customer_id"),
        ("/recommend", {"customer_id": "c", "k": "ten"}, "k"),
        ("/recommend", {"customer_id": "c", "k": 0}, "k"),
        ("/recommend", {"customer_id": "c", "k": 101}, "k"),
        ("/recommend", {"customer_id": "c", "colour": "red"}, "colour"),
        ("/recommend", {"k": 5}, "customer_id"),
        ("/recommend", {"customer_id": "c", "categories": "shoes"}, "categories"),
        ("/similar_items", {"item_id": "i", "k": 101}, "k"),
        ("/similar_items", {}, "item_id"),
        ("/churn", {"customer_ids": []}, "customer_ids"),
        ("/churn", {"customer_ids": [f"c{i}" for i in range(1001)]}, "customer_ids"),
        ("/churn", {"customer_ids": "c1"}, "customer_ids"),
        ("/churn", {"customer_ids": ["c1"], "extra": 1}, "extra"),
        ("/recommend", {"customer_id": "c", "categories": ["x"] * 101}, "categories"),
        ("/recommend", {"customer_id": "c", "context_item_ids": ["i"] * 51}, "context_item_ids"),
        ("/retention/plan", {"budget": 1, "offers": [{"offer_type": "sms", "cost": 1}] * 101}, "offers"),
        ("/events", {"events": [{}] * 501}, "events"),
        ("/items/stock", {"items": [{"item_id": "i", "in_stock": True}] * 1001}, "items"),
    ],
)
def test_bad_input_is_a_4xx_naming_the_field(patron_server, path, body, field):
    r = post(patron_server, path, body)
    assert 400 <= r.status_code < 500
    assert field in r.text


def test_recommend_latency(patron_server):
    customers = busy_customers(patron_server, 50) + ["no-such-customer"]
    timings = []
    with patron_server.client() as client:
        for n in range(500):
            started = time.perf_counter()
            r = client.post("/recommend", json={"customer_id": customers[n % len(customers)], "k": 10})
            timings.append(time.perf_counter() - started)
            assert r.status_code == 200
    p50, p99 = np.percentile(np.array(timings) * 1000, [50, 99])
    print(f"\n/recommend over 500 sequential requests: p50 {p50:.1f} ms, p99 {p99:.1f} ms")


def test_not_ready_without_champions_and_still_alive(unpromoted_workspace, tmp_path):
    proc, server = start_patron_server(unpromoted_workspace, tmp_path / "server.log", wait_ready=False)
    try:
        for _ in range(3):
            assert httpx.get(server.url + "/readyz").status_code == 503
            time.sleep(1.2)  # longer than champion_retry_s, so readiness retried the load each time
        with server.client() as http:
            r = http.post("/recommend", json={"customer_id": "c"})
        assert r.status_code == 503
        assert httpx.get(server.url + "/livez").status_code == 200
        assert proc.poll() is None
    finally:
        stop_server(proc)
