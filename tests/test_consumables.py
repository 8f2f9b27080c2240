"""Consumables come back when due: repurchase cycles, the recommend path, and the real server."""

from __future__ import annotations

import uuid
from statistics import median

import pandas as pd
import pytest

from features.pit.repurchase import RepurchaseCycles, day_number, interval_days
from features.tables.store import read_table
from patron.config import RepurchaseConfig
from serving.answers.recommendations import RESTOCK_REASON

DAY0 = pd.Timestamp("2025-03-01")


def _events(rows: list[tuple[str, str, int, str]]) -> pd.DataFrame:
    return pd.DataFrame(
        [(c, i, DAY0 + pd.Timedelta(days=d, hours=9), t) for c, i, d, t in rows],
        columns=["customer_id", "item_id", "ts", "type"],
    )


def _live(item: str, day: int, kind: str = "view") -> dict:
    return {"item_id": item, "type": kind, "ts": (DAY0 + pd.Timedelta(days=day, hours=12)).isoformat()}


def test_interval_is_the_median_gap_between_distinct_purchase_days_once_repeated_enough():
    assert interval_days([0, 10, 10, 30], min_repeats=2) == 15.0  # gaps 10 and 20; the same day counts once
    assert interval_days([0, 7, 14, 40], min_repeats=2) == 7.0
    assert interval_days([0, 10], min_repeats=2) is None
    assert interval_days([0, 10], min_repeats=1) == 10.0


def test_an_item_is_due_from_interval_times_due_factor_until_it_lapses():
    cfg = RepurchaseConfig(min_repeats=2, due_factor=0.9, forget_after_cycles=3.0)
    events = _events(
        [
            ("a", "soap", 0, "purchase"),
            ("a", "soap", 10, "purchase"),
            ("a", "soap", 20, "purchase"),
            ("a", "sofa", 5, "purchase"),
            ("a", "tea", 0, "purchase"),
            ("a", "tea", 14, "purchase"),
            ("a", "soap", 20, "view"),
        ]
    )
    cycles = RepurchaseCycles.from_events(events, cfg)
    assert cycles.as_of == day_number(DAY0) + 20
    assert set(cycles.history["a"]) == {"soap", "tea"}  # the sofa, bought once, can never form a cycle
    assert cycles.due("a", []) == []  # bought today
    assert cycles.due("a", [_live("sofa", 28)]) == []  # 8 days of a 10-day cycle: 0.8 < 0.9
    assert cycles.due("a", [_live("sofa", 29)]) == [("soap", pytest.approx(0.9))]
    assert cycles.due("a", [_live("sofa", 50)]) == [("soap", pytest.approx(3.0))]
    assert cycles.due("a", [_live("sofa", 51)]) == []  # lapsed: more than 3 cycles overdue
    # tea: one repeat in the batch history, a live purchase completes the cycle (14 days)
    # (soap, 21 days after its last purchase, is more overdue and comes first)
    assert [i for i, _ in cycles.due("a", [_live("tea", 28, "purchase"), _live("sofa", 41)])] == ["soap", "tea"]
    assert [i for i, _ in cycles.due("a", [_live("tea", 28, "purchase"), _live("sofa", 40)])] == ["soap"]  # 12/14
    assert cycles.due("nobody", [_live("sofa", 29)]) == []


def test_the_wall_clock_ignores_event_timestamps():
    events = _events([("a", "soap", d, "purchase") for d in (0, 10, 20)])
    wall = RepurchaseCycles.from_events(events, RepurchaseConfig(clock="wall", forget_after_cycles=1e6))
    assert wall.now([_live("soap", 29)]) == day_number(pd.Timestamp.now("UTC").tz_localize(None))
    assert [i for i, _ in wall.due("a", [])] == ["soap"]  # years after 2025-03: due


@pytest.fixture(scope="module")
def served(trained_workspace, refusing_customer):
    """The champion recommender, the online state (no live store) and the rules of the trained workspace."""
    from serving.answers.rules import RuleBook
    from serving.champions.load import load_recommender_champion
    from serving.online.state import OnlineState

    s = trained_workspace.settings
    recommender, _ = load_recommender_champion(s)
    state = OnlineState.from_workspace(s, pd.DataFrame({"customer_id": pd.Series([], dtype=str)}))
    return recommender, state, RuleBook(s).current(), s


def _answer(served, customer, cycles, k=10):
    from serving.answers.recommendations import recommend

    recommender, state, rules, s = served
    return recommend(recommender, state, customer, k, True, None, None, rules, s, cycles)


def test_a_due_item_is_blended_in_unless_out_of_stock_or_without_consent(served, refusing_customer):
    recommender, state, _, s = served
    customer = next(
        c
        for c, items in state.purchased.items()
        if c != refusing_customer and recommender.knows_customer(c) and set(items) & state.in_stock
    )
    bought = state.purchased[customer]
    in_stock, gone = [i for i in bought if i in state.in_stock], [i for i in bought if i not in state.in_stock]
    if not gone:
        gone = [next(i for i in state.category_of if i not in state.in_stock)]
    today = 1000
    theirs = next(i for i in state.purchased[refusing_customer] if i in state.in_stock)
    history = {
        customer: {in_stock[0]: (today - 40, today - 20), gone[0]: (today - 40, today - 20)},
        refusing_customer: {theirs: (today - 40, today - 20)},
    }
    cycles = RepurchaseCycles(RepurchaseConfig(min_repeats=1), history, today)
    plain = _answer(served, customer, None)
    assert not {i["item_id"] for i in plain.items} & set(bought)
    answer = _answer(served, customer, cycles)
    first = answer.items[0]
    assert first["item_id"] == in_stock[0] and first["reason"] == RESTOCK_REASON  # weight 0.6 > the base's 0.4
    assert "restock" in answer.rules_applied and answer.source == "personal"
    others = [i["item_id"] for i in answer.items[1:]]
    assert not set(others) & set(bought) and gone[0] not in others  # other purchases and out of stock stay out
    assert [i["score"] for i in answer.items] == sorted((i["score"] for i in answer.items), reverse=True)
    refused = _answer(served, refusing_customer, cycles)
    assert theirs not in {i["item_id"] for i in refused.items} and "restock" not in refused.rules_applied
    off = RepurchaseCycles(RepurchaseConfig(min_repeats=1, enabled=False), history, today)
    assert _answer(served, customer, off).items == plain.items


def _cycle_customer(settings, refusing: str) -> tuple[str, str, list[int]]:
    """A consenting customer with exactly one item bought on 3+ distinct days (in stock), its purchase days."""
    events = read_table(settings.tables_dir, "events", columns=["customer_id", "item_id", "ts", "type"])
    products = read_table(settings.tables_dir, "products")
    bought = events[events["type"] == "purchase"].assign(day=lambda e: e["ts"].map(day_number))
    days = bought.drop_duplicates(["customer_id", "item_id", "day"]).groupby(["customer_id", "item_id"])["day"]
    counts = days.size().rename("n")
    repeated = counts[counts >= 2].reset_index()
    single = repeated.groupby("customer_id").filter(lambda g: len(g) == 1)
    single = single[
        (single["n"] >= 3)
        & single["item_id"].isin(products.loc[products["in_stock"], "item_id"])
        & (single["customer_id"] != refusing)
    ]
    customer, item = single.iloc[0][["customer_id", "item_id"]]
    return customer, item, sorted(days.get_group((customer, item)))


@pytest.mark.integration
def test_a_regular_consumable_comes_back_when_due_and_not_right_after_buying_it(patron_server, refusing_customer):
    s = patron_server.workspace.settings
    customer, item, days = _cycle_customer(s, refusing_customer)
    events = read_table(s.tables_dir, "events", columns=["ts"])
    bought_day = day_number(events["ts"].max()) + 1
    interval = median(pd.Series(days + [bought_day]).diff().dropna())
    due_day = bought_day + next(d for d in range(1, 10_000) if d / interval >= s.repurchase.due_factor)
    run = uuid.uuid4().hex[:8]

    def post(path: str, body: dict) -> dict:
        with patron_server.client(timeout=30) as http:
            r = http.post(path, json=body)
        assert r.status_code == 200, r.text
        return r.json()

    def send(day: int, kind: str) -> None:
        ts = (pd.Timestamp(0) + pd.Timedelta(days=day, hours=10)).isoformat()
        body = post(
            "/events",
            {
                "events": [
                    {
                        "event_id": f"cons-{run}-{day}-{kind}",
                        "customer_id": customer,
                        "item_id": item,
                        "ts": ts,
                        "type": kind,
                    }
                ]
            },
        )
        assert body["accepted"] == 1

    def recommended(k: int) -> dict[str, str]:
        return {i["item_id"]: i["reason"] for i in post("/recommend", {"customer_id": customer, "k": k})["items"]}

    send(bought_day, "purchase")
    assert item not in recommended(100)  # bought a moment ago: hidden by exclude_purchased
    send(due_day - 1, "view")
    assert item not in recommended(100)  # a day short of interval x due_factor
    send(due_day, "view")
    assert recommended(10).get(item) == RESTOCK_REASON
    post("/items/stock", {"items": [{"item_id": item, "in_stock": False}]})
    try:
        assert item not in recommended(100)  # rules still apply to restocks
    finally:
        post("/items/stock", {"items": [{"item_id": item, "in_stock": True}]})
    assert recommended(10).get(item) == RESTOCK_REASON
