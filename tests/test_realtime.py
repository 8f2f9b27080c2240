"""Real time over HTTP: a 2-worker server per online backend (SQLite WAL, real Redis) over a copy of the workspace."""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import mlflow
import pytest
import yaml
from mlflow import MlflowClient

from features.tables.store import read_table
from patron.config import load_settings
from serving.online.backend import open_store
from tests.conftest import SMALL_CONFIG, Server, Workspace, purchases, start_patron_server, stop_server

pytestmark = pytest.mark.integration
WORKERS = 2
FAN_OUT = 16  # concurrent requests, so that every worker answers some


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def rt(request, trained_workspace, refusing_customer, tmp_path_factory) -> Iterator[Server]:
    """A 2-worker server on a copy of the trained workspace (own registry, online store and rules file)."""
    root = tmp_path_factory.mktemp(f"realtime-{request.param}")
    shutil.copytree(
        trained_workspace.settings.workspace,
        root / "workspace",
        ignore=shutil.ignore_patterns("bentoml", "online.db*", "rules.yaml"),
    )
    config = root / "patron.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                **SMALL_CONFIG,
                "workspace": str(root / "workspace"),
                "serving": {**SMALL_CONFIG["serving"], "workers": WORKERS},
                "online": {
                    "backend": request.param,
                    "redis_prefix": f"patron-test-{uuid.uuid4().hex}",
                    "rules_path": str(root / "rules.yaml"),
                    "rules_check_s": 0.2,
                    "reload_poll_s": 1,
                },
            }
        )
    )
    ws = Workspace(settings=load_settings(config), config=config)
    proc, server = start_patron_server(ws, root / "server.log")
    # /readyz answers as soon as one worker is up: wait for the other before testing "on every worker"
    deadline, pids = time.monotonic() + 90, set()
    while len(pids) < WORKERS and time.monotonic() < deadline:
        pids |= {b["worker_pid"] for b in fan_out(server, "/status", {}, n=WORKERS * 8)}
        time.sleep(0.2)
    yield server
    stop_server(proc)
    store = open_store(ws.settings)
    store.clear()
    store.close()


def post(server: Server, path: str, body: dict) -> httpx.Response:
    with server.client(timeout=30) as http:
        return http.post(path, json=body)


def fan_out(server: Server, path: str, body: dict, n: int = FAN_OUT) -> list[dict]:
    """n concurrent requests on fresh connections; every one must succeed."""
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda _: post(server, path, body), range(n)))
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses if r.status_code != 200]
    return [r.json() for r in responses]


def ids(body: dict) -> list[str]:
    return [i["item_id"] for i in body["items"]]


def event(customer: str, item: str, kind: str, n: int = 0) -> dict:
    return {
        "event_id": f"{customer}-{kind}-{item}-{n}",
        "customer_id": customer,
        "item_id": item,
        "ts": f"2026-06-01T10:00:{n:02d}",
        "type": kind,
    }


def personalised_customer(server: Server, refusing: str) -> str:
    for customer in purchases(server.workspace.settings)["customer_id"].value_counts().index[:30]:
        if customer != refusing and not post(server, "/recommend", {"customer_id": customer}).json()["fallback"]:
            return customer
    raise AssertionError("no personalised customer among the busiest 30")


def test_both_workers_answer(rt):
    pids = {b["worker_pid"] for b in fan_out(rt, "/status", {}, n=48)}
    assert len(pids) == WORKERS


def test_a_purchase_is_excluded_from_the_next_recommendation_on_every_worker(rt, refusing_customer):
    customer = personalised_customer(rt, refusing_customer)
    top = ids(post(rt, "/recommend", {"customer_id": customer, "k": 5}).json())[0]
    r = post(rt, "/events", {"events": [event(customer, top, "purchase")]})
    assert r.json() == {"accepted": 1, "duplicates": 0, "rejected": [], "alerts": 0}
    for body in fan_out(rt, "/recommend", {"customer_id": customer, "k": 20}):
        assert top not in ids(body) and "exclude_purchased" in body["rules_applied"]
        assert body["fallback"] is False and body["source"] == "personal"


def test_a_new_customer_is_personalised_after_three_events(rt):
    p = read_table(rt.workspace.settings.tables_dir, "products")
    in_stock = p[p["in_stock"]]
    popular = ids(post(rt, "/recommend", {"customer_id": "rt-new-a", "k": 10}).json())
    answers = {}
    categories = sorted(in_stock["category"].astype(str).unique())
    for customer, category in (("rt-new-a", categories[0]), ("rt-new-b", categories[-1])):
        before = post(rt, "/recommend", {"customer_id": customer, "k": 10}).json()
        assert before["fallback"] is True and before["source"] == "popular"
        items = in_stock.loc[in_stock["category"] == category, "item_id"].tolist()[:3]
        kinds = ["view", "cart", "purchase"]
        r = post(rt, "/events", {"events": [event(customer, i, kinds[n], n) for n, i in enumerate(items)]})
        assert r.json()["accepted"] == 3
        bodies = fan_out(rt, "/recommend", {"customer_id": customer, "k": 10})
        assert all(b["fallback"] is False and b["source"] == "live_history" for b in bodies)
        assert all(ids(b) == ids(bodies[0]) for b in bodies), "workers disagree"
        assert items[2] not in ids(bodies[0])  # the purchase
        answers[customer] = ids(bodies[0])
    assert answers["rt-new-a"] != popular and answers["rt-new-a"] != answers["rt-new-b"]


def test_a_customer_who_refused_personalisation_stays_unpersonalised_with_live_events(rt, refusing_customer):
    item = ids(post(rt, "/recommend", {"customer_id": refusing_customer}).json())[0]
    post(rt, "/events", {"events": [event(refusing_customer, item, "view")]})
    body = post(rt, "/recommend", {"customer_id": refusing_customer}).json()
    assert body["fallback"] is True and "no_personalisation_consent" in body["rules_applied"]


def test_duplicates_count_once_and_bad_rows_are_named(rt):
    item = read_table(rt.workspace.settings.tables_dir, "products")["item_id"].iloc[0]
    batch = [event("rt-dup", item, "view", n) for n in range(3)]
    assert post(rt, "/events", {"events": batch}).json() == {
        "accepted": 3,
        "duplicates": 0,
        "rejected": [],
        "alerts": 0,
    }
    again = post(
        rt,
        "/events",
        {
            "events": batch
            + [{**batch[0], "event_id": "rt-dup-new", "quantity": 0}, {**batch[0], "event_id": "rt-dup-ok"}]
        },
    ).json()
    assert again["accepted"] == 1 and again["duplicates"] == 3
    assert [r["index"] for r in again["rejected"]] == [3] and again["rejected"][0]["reason"].startswith("quantity")
    assert post(rt, "/events", {"events": []}).status_code == 400
    big = post(rt, "/events", {"events": [batch[0]] * 501})
    assert big.status_code == 400 and "events" in big.text


def test_stock_changes_apply_on_the_next_request(rt, refusing_customer):
    customer = personalised_customer(rt, refusing_customer)
    top = ids(post(rt, "/recommend", {"customer_id": customer, "k": 5}).json())[0]
    r = post(
        rt, "/items/stock", {"items": [{"item_id": top, "in_stock": False}, {"item_id": "nope", "in_stock": True}]}
    )
    assert r.json()["updated"] == 1 and r.json()["rejected"][0]["index"] == 1
    assert r.json()["rejected"][0]["kind"] == "items" and "item_id" in r.json()["rejected"][0]["reason"]
    try:
        for body in fan_out(rt, "/recommend", {"customer_id": customer, "k": 20}):
            assert top not in ids(body) and "in_stock_only" in body["rules_applied"]
        assert top not in ids(post(rt, "/recommend", {"customer_id": "nobody", "k": 100}).json())
    finally:
        post(rt, "/items/stock", {"items": [{"item_id": top, "in_stock": True}]})
    assert top in ids(post(rt, "/recommend", {"customer_id": customer, "k": 5}).json())


def test_context_items_blend_in_their_neighbours(rt):
    item = purchases(rt.workspace.settings)["item_id"].value_counts().index[0]
    similar = ids(post(rt, "/similar_items", {"item_id": item, "k": 5}).json())
    body = post(rt, "/recommend", {"customer_id": "rt-ctx", "k": 10, "context_item_ids": [item]}).json()
    assert item not in ids(body) and "context" in body["rules_applied"]
    blended = [i for i in body["items"] if i["reason"].startswith("goes with")]
    assert blended and {i["item_id"] for i in blended} & set(similar)
    assert [i["score"] for i in body["items"]] == sorted((i["score"] for i in body["items"]), reverse=True)


def test_rules_file_changes_apply_without_restart(rt):
    rules: Path = rt.workspace.settings.rules_file
    p = read_table(rt.workspace.settings.tables_dir, "products")
    category_of = dict(zip(p["item_id"], p["category"].astype(str)))
    popular = ids(post(rt, "/recommend", {"customer_id": "rt-rules", "k": 10}).json())
    banned = category_of[popular[0]]
    boosted = next(i for i in reversed(popular) if category_of[i] != banned)
    rules.write_text(
        yaml.safe_dump({"max_per_category": 1, "exclude_categories": [banned], "boost_items": {boosted: 100.0}})
    )
    try:
        time.sleep(0.5)  # longer than rules_check_s
        for body in fan_out(rt, "/recommend", {"customer_id": "rt-rules", "k": 10}, n=8):
            cats = [category_of[i] for i in ids(body)]
            assert len(cats) == len(set(cats)) and banned not in cats
            assert {"exclude_categories", "max_per_category=1", "boost"} <= set(body["rules_applied"])
        status = post(rt, "/status", {}).json()
        assert status["rules"]["max_per_category"] == 1 and status["rules"]["boost_items"] == {boosted: 100.0}
    finally:
        rules.unlink()
    time.sleep(0.5)
    assert ids(post(rt, "/recommend", {"customer_id": "rt-rules", "k": 10}).json()) == popular


def test_a_moved_alias_is_served_with_no_failed_request_and_a_broken_one_is_refused(rt, tmp_path):
    s = rt.workspace.settings
    client = MlflowClient(tracking_uri=s.tracking_uri, registry_uri=s.tracking_uri)  # not the process-wide one
    # create_model_version resolves a models:/ source through the process-wide tracking URI
    mlflow.set_tracking_uri(s.tracking_uri)
    name, alias = s.tracking.recommender_model, s.tracking.champion_alias
    old = client.get_model_version_by_alias(name, alias)
    failures, versions, stop = [], set(), threading.Event()

    def drive() -> None:
        with rt.client(timeout=30) as http:
            while not stop.is_set():
                r = http.post("/recommend", json={"customer_id": "rt-reload", "k": 5})
                if r.status_code != 200:
                    failures.append(r.status_code)
                else:
                    versions.add(r.json()["model_version"])

    new = client.create_model_version(name, old.source, old.run_id)
    drivers = [threading.Thread(target=drive) for _ in range(2)]
    for t in drivers:
        t.start()
    try:
        # the drivers must be answered by the old champion first, or the swap could happen before they start
        deadline = time.monotonic() + 30
        while str(old.version) not in versions and not failures and time.monotonic() < deadline:
            time.sleep(0.05)
        client.set_registered_model_alias(name, alias, new.version)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            answers = {b["model_version"] for b in fan_out(rt, "/recommend", {"customer_id": "rt-reload"}, n=8)}
            if answers == {str(new.version)}:
                break
            time.sleep(0.5)
        assert answers == {str(new.version)}, "not every worker swapped to the new champion in time"
        # keep driving until the drivers too have been answered by the new champion
        deadline = time.monotonic() + 30
        while str(new.version) not in versions and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        stop.set()
        for t in drivers:
            t.join()
    assert failures == [] and versions == {str(old.version), str(new.version)}

    broken = client.create_model_version(name, str(tmp_path / "no-model-here"), old.run_id)
    client.set_registered_model_alias(name, alias, broken.version)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            statuses = [b["models"][0] for b in fan_out(rt, "/status", {}, n=8)]
            if all(st["last_error"] and st["registry_version"] == str(broken.version) for st in statuses):
                break
            time.sleep(0.5)
        assert all(st["serving_version"] == str(new.version) and st["last_error"] for st in statuses)
        body = post(rt, "/recommend", {"customer_id": "rt-reload"}).json()
        assert body["model_version"] == str(new.version)
    finally:
        client.set_registered_model_alias(name, alias, old.version)


def test_folding_a_customers_own_history_in_reproduces_their_trained_recommendations(trained_workspace):
    from serving.champions.load import load_recommender_champion

    s = trained_workspace.settings
    rec, _ = load_recommender_champion(s)
    overlaps = []
    for user in range(30):
        row = rec.user_items[user]
        history = [str(rec.item_ids[i]) for i in row.indices]
        trained = [i for i, _ in rec.recommend(str(rec.customer_ids[user]), 10)]
        folded = [
            i
            for i, _ in rec.recommend_from_history(
                history, row.data.tolist(), 10, regularization=s.recommender.regularization, alpha=s.recommender.alpha
            )
        ]
        overlaps.append(len(set(trained) & set(folded)))
    assert sum(overlaps) / len(overlaps) >= 8, overlaps
    allowed = set(map(str, rec.item_ids[:50]))
    limited = rec.recommend_from_history(history, row.data.tolist(), 10, exclude={trained[0]}, allowed=allowed)
    assert {i for i, _ in limited} <= allowed - {trained[0]} and len(limited) == 10
    assert rec.recommend_from_history(["no-such-item"], [8.0], 10) == []
    assert rec.recommend_from_history(history[:1], [-4.0], 10) == []  # a lone return is no interest


def test_boosts_are_bounded_and_the_category_cap_keeps_the_best_of_each():
    from patron.config import RulesConfig
    from serving.answers.rules import rerank

    ranked = [("a", 1.0), ("b", 0.9), ("c", 0.3), ("d", -0.5)]
    category_of = {"a": "x", "b": "x", "c": "y", "d": "y"}
    bounded, applied = rerank(ranked, RulesConfig(boost_items={"c": 100.0}, max_boost=2.0), category_of, 4)
    assert [i for i, _ in bounded] == ["a", "b", "c", "d"] and bounded[2][1] == pytest.approx(0.6)
    assert applied == ["boost"]
    strong, _ = rerank(ranked, RulesConfig(boost_items={"c": 100.0}, max_boost=5.0), category_of, 4)
    assert [i for i, _ in strong][:2] == ["c", "a"]
    demoted, _ = rerank(ranked, RulesConfig(boost_categories={"x": 0.0}, max_boost=2.0), category_of, 4)
    assert dict(demoted) == pytest.approx({"a": 0.5, "b": 0.45, "c": 0.3, "d": -0.5})  # halved at most
    capped, applied = rerank(ranked, RulesConfig(max_per_category=1), category_of, 4)
    assert capped == [("a", 1.0), ("c", 0.3)] and applied == ["max_per_category=1"]
