"""Customer features, churn labels, interactions and builds on a tiny hand-computed example."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features.pit.build import (
    build_features,
    churn_labels,
    customer_features,
    cutoff_plan,
    data_end,
    interactions,
    training_set,
)
from features.pit.customer_features import FEATURE_DESCRIPTIONS
from features.pit.cutoffs import as_cutoff
from features.tables.contract import CHANNELS, LOYALTY_TIERS
from patron.config import Settings
from tests.test_features_tables import random_tables, write_workspace

T = pd.Timestamp("2025-03-01")
ts = pd.Timestamp


def _events(rows: list[tuple]) -> pd.DataFrame:
    df = pd.DataFrame(
        rows,
        columns=["event_id", "customer_id", "item_id", "ts", "type", "quantity", "unit_price", "channel", "order_id"],
    )
    df["ts"] = pd.to_datetime(df["ts"], format="ISO8601").astype("datetime64[ns]")
    df["quantity"] = df["quantity"].astype("Int64")
    return df


def tiny_tables() -> dict[str, pd.DataFrame]:
    """A: a regular buyer; B: only views; C: signs up at the cutoff; D: lapsed long ago; E: buys, then stops."""
    customers = pd.DataFrame(
        {
            "customer_id": ["A", "B", "C", "D", "E"],
            "signup_date": pd.to_datetime(["2024-12-01", "2025-02-01", "2025-03-01", "2024-06-01", "2024-06-01"]),
            "region": ["north", "south", "north", "south", "east"],
            "birth_year": pd.array([1980, 1990, 2000, 1970, 1985], dtype="Int64"),
            "loyalty_tier": ["platinum"] * 5,  # export-time snapshot: must not be used
            "preferred_channel": ["online", "app", "store", "store", "online"],
        }
    )
    products = pd.DataFrame(
        {"item_id": ["i1", "i2"], "category": ["food", "toys"], "in_stock": True, "unit_price": [10.0, 20.0]}
    )
    events = _events(
        [
            ("e1", "A", "i1", "2025-01-01 12:00", "purchase", 2, 10.0, "online", "o1"),
            ("e2", "A", "i2", "2025-01-01 12:00", "purchase", 1, 20.0, "online", "o1"),
            ("e3", "A", "i1", "2025-02-10", "purchase", 1, 10.0, "store", "o2"),
            ("e4", "A", "i2", "2025-02-15", "view", 1, 20.0, "online", None),
            ("e5", "A", "i1", "2025-02-20", "return", 1, 10.0, "store", "o2"),
            ("e6", "A", "i1", "2025-03-05", "purchase", 1, 10.0, "store", "o3"),
            ("e7", "B", "i1", "2025-02-05", "view", 1, 10.0, "app", None),
            ("e8", "B", "i1", "2025-03-10", "purchase", 1, 10.0, "app", "o4"),
            ("e9", "C", "i2", "2025-03-02", "purchase", 1, 20.0, "app", "o5"),
            ("e10", "D", "i2", "2024-08-01", "purchase", 1, 20.0, "store", "o6"),
            ("e11", "D", "i2", "2025-06-09", "purchase", 1, 20.0, "store", "o7"),  # t + 100 days
            ("e12", "E", "i2", "2025-01-15", "purchase", 1, 20.0, "online", "o8"),
        ]
    )
    tickets = pd.DataFrame(
        {
            "ticket_id": ["t1", "t2", "t3", "t4"],
            "customer_id": ["A"] * 4,
            "opened_at": pd.to_datetime(["2025-02-01", "2025-02-20", "2025-02-25", "2025-03-03"]),
            "resolved_at": pd.to_datetime(["2025-02-03", "2025-03-02", None, "2025-03-04"]),
            "category": ["quality", "delivery", "other", "price"],
            "satisfaction": pd.array([4, 1, None, 2], dtype="Int64"),
        }
    )
    surveys = pd.DataFrame(
        {
            "customer_id": ["A", "A", "A"],
            "ts": pd.to_datetime(["2025-01-10", "2025-02-10", "2025-03-10"]),
            "nps": pd.array([9, 6, 0], dtype="Int64"),
            "csat": pd.array([5, None, 1], dtype="Int64"),
        }
    )
    loyalty = pd.DataFrame(
        {
            "customer_id": ["A", "A", "A"],
            "ts": pd.to_datetime(["2025-01-01", "2025-02-10", "2025-03-05"]),
            "points_delta": pd.array([100, 50, 1000], dtype="Int64"),
            "tier_after": ["bronze", "silver", "gold"],
        }
    )
    offers = pd.DataFrame(
        {
            "offer_id": ["f1", "f2", "f3"],
            "customer_id": ["A"] * 3,
            "sent_at": pd.to_datetime(["2025-01-20", "2025-02-20", "2025-03-02"]),
            "offer_type": "discount_voucher",
            "cost": 5.0,
            "randomized": False,
            "redeemed_at": pd.to_datetime(["2025-01-25", "2025-03-02", "2025-03-03"]),
        }
    )
    return {
        "customers": customers,
        "products": products,
        "events": events,
        "tickets": tickets,
        "surveys": surveys,
        "loyalty": loyalty,
        "offers": offers,
    }


@pytest.fixture
def tiny(tmp_path: Path) -> Settings:
    return write_workspace(tmp_path / "ws", tiny_tables())


def test_hand_computed_features(tiny: Settings) -> None:
    f = customer_features(tiny, T).set_index("customer_id")
    assert list(f.index) == ["A", "B", "D", "E"]  # C signs up at the cutoff
    a = f.loc["A"]
    expected = {
        "days_since_last_purchase": 19.0,
        "days_since_first_purchase": 58.5,
        "days_since_last_event": 9.0,
        "orders_total": 2.0,
        "spend_total": 50.0,
        "orders_30d": 1.0,
        "spend_30d": 10.0,
        "orders_90d": 2.0,
        "spend_90d": 50.0,
        "orders_trend_30d": 0.0,
        "spend_trend_30d": -30.0,
        "views_30d": 1.0,
        "avg_order_value": 25.0,
        "basket_size_mean": 2.0,
        "item_breadth": 2.0,
        "category_breadth": 2.0,
        "gap_mean_days": 40.0,
        "recency_gap_ratio": 19 / 40,
        "returns_rate": 0.25,
        "view_to_purchase": 3.0,
        "channel_share_online": 2 / 3,
        "channel_share_store": 1 / 3,
        "channel_share_app": 0.0,
        "tenure_days": 90.0,
        "age": 45.0,
        "tickets_total": 3.0,
        "open_tickets": 2.0,
        "open_ticket_age_days": 9.0,
        "resolution_days_mean": 2.0,
        "ticket_satisfaction_mean": 4.0,
        "tickets_quality": 1.0,
        "tickets_delivery": 1.0,
        "tickets_price": 0.0,
        "nps_last": 6.0,
        "nps_trend": -3.0,
        "csat_last": 5.0,
        "points_balance": 150.0,
        "offers_received": 2.0,
        "offers_redeemed": 1.0,
        "offer_redemption_rate": 0.5,
    }
    for name, value in expected.items():
        assert a[name] == pytest.approx(value), name
    assert math.isnan(a["gap_std_days"]) and math.isnan(a["csat_trend"])
    assert a["loyalty_tier"] == "silver" and a["region"] == "north" and a["preferred_channel"] == "online"
    b = f.loc["B"]
    assert b["orders_total"] == 0 and math.isnan(b["days_since_last_purchase"]) and b["views_total"] == 1
    assert b["loyalty_tier"] == "none" and b["points_balance"] == 0 and b["open_tickets"] == 0
    assert f.loc["D", "days_since_last_purchase"] == pytest.approx(212.0)


def test_hand_computed_browsing_channel_offer_and_points_signals(tiny: Settings) -> None:
    rules = {"channel_shift_days": 30, "offer_ignored_after_days": 5, "points_expiry_days": 365}
    settings = tiny.model_copy(update={"features": tiny.features.model_copy(update=rules)})
    f = customer_features(settings, T).set_index("customer_id")
    # A viewed on 02-15 after buying on 02-10; B only viewed (02-05); D and E never viewed
    assert f["view_days_since_purchase"].to_dict() == {"A": 1.0, "B": 1.0, "D": 0.0, "E": 0.0}
    # A's last 30 days: store, online, store; before: online, online -> 0.5 * (|1/3 - 1| + |2/3 - 0| + 0)
    assert f.loc["A", "channel_shift"] == pytest.approx(2 / 3)
    assert f[["channel_shift"]].drop(index="A").isna().all().all()  # one period without events: unknown
    # offers sent before 02-24: f2 (02-20, redeemed only on 03-02) is ignored, f1 (redeemed 01-25) ends the run
    assert f.loc["A", "offers_ignored_in_a_row"] == 1.0 and f.loc["B", "offers_ignored_in_a_row"] == 0.0
    # 150 points, last points activity 02-10: they lapse 365 - 19 days later; no points, no date
    assert f.loc["A", "days_until_points_lapse"] == pytest.approx(346.0)
    assert math.isnan(f.loc["B", "days_until_points_lapse"])
    never = tiny.model_copy(update={"features": tiny.features.model_copy(update={"points_expiry_days": None})})
    base = customer_features(never, T).set_index("customer_id")
    assert "days_until_points_lapse" not in base  # points that never lapse give no such feature
    assert math.isnan(base.loc["A", "channel_shift"])  # 90 days: every event of A is recent
    assert base.loc["A", "offers_ignored_in_a_row"] == 0.0  # 30 days: only f1 is old enough, and redeemed


def test_hand_computed_rebuy_overdue_from_categories_bought_again_before_the_cutoff(tmp_path: Path) -> None:
    customers = pd.DataFrame({"customer_id": ["P", "Q", "R", "S"], "signup_date": pd.to_datetime(["2024-12-01"] * 4)})
    products = pd.DataFrame(
        {"item_id": ["c1", "c2", "t1", "t2"], "category": ["coffee", "coffee", "toys", "toys"], "in_stock": True}
    )
    buy = lambda n, c, i, day: (f"e{n}", c, i, day, "purchase", 1, 5.0, "online", f"o{n}")  # noqa: E731
    events = _events(
        [
            buy(1, "P", "c1", "2025-01-01"),
            buy(2, "P", "c1", "2025-01-11"),
            buy(3, "P", "c1", "2025-01-11 18:00"),
            buy(4, "P", "c1", "2025-01-21"),
            buy(5, "P", "c1", "2025-03-05"),  # the last one after the cutoff
            buy(6, "Q", "c1", "2025-01-05"),
            buy(7, "Q", "c2", "2025-01-25"),
            buy(8, "R", "c2", "2025-02-20"),
            buy(9, "P", "t1", "2025-01-02"),
            buy(10, "P", "t2", "2025-02-01"),
            buy(11, "Q", "t1", "2025-01-03"),
            buy(12, "Q", "t2", "2025-01-10"),
            buy(13, "S", "t1", "2025-02-01"),
        ]
    )
    tables = {"customers": customers, "products": products, "events": events}
    rule = {"rebuy_min_gaps": 3, "rebuy_same_item_share": 0.5}
    f = customer_features(write_workspace(tmp_path / "ws", tables, features=rule), T).set_index("customer_id")
    # coffee, before the cutoff: gaps 10 and 10 (P, the same item; two orders on 01-11 are one day) and 20 (Q, the
    # other item): 3 gaps, 2/3 the same item -> re-bought, usual interval 10 days. Toys: 2 gaps, never the same
    # item -> not re-bought. P's 03-05 purchase is after the cutoff and changes nothing (else the median is 15).
    assert f["rebuy_categories"].to_dict() == {"P": 1.0, "Q": 1.0, "R": 1.0, "S": 0.0}
    assert f["rebuy_overdue_ratio"].drop(index="S").to_dict() == pytest.approx({"P": 3.9, "Q": 3.5, "R": 0.9})
    assert f["rebuy_overdue_days"].drop(index="S").to_dict() == pytest.approx({"P": 29.0, "Q": 25.0, "R": -1.0})
    assert math.isnan(f.loc["S", "rebuy_overdue_ratio"]) and math.isnan(f.loc["S", "rebuy_overdue_days"])
    for stricter in ({"rebuy_min_gaps": 4}, {"rebuy_same_item_share": 0.7}):  # 3 gaps; 2/3 the same item
        g = customer_features(write_workspace(tmp_path / str(stricter), tables, features={**rule, **stricter}), T)
        assert (g["rebuy_categories"] == 0).all() and g["rebuy_overdue_ratio"].isna().all(), stricter


def test_categoricals_have_fixed_vocabularies(tiny: Settings) -> None:
    f = customer_features(tiny, T)
    assert list(f["loyalty_tier"].cat.categories) == list(LOYALTY_TIERS)
    assert list(f["preferred_channel"].cat.categories) == list(CHANNELS)
    # The region vocabulary is the whole customers table's, the same at every cutoff.
    assert list(f["region"].cat.categories) == ["east", "north", "south"]
    numeric = f.drop(columns=["customer_id", "loyalty_tier", "preferred_channel", "region"])
    assert (numeric.dtypes == "float64").all()


def test_hand_computed_labels(tiny: Settings) -> None:
    labels = churn_labels(tiny, T).set_index("customer_id")
    assert labels["active"].to_dict() == {"A": True, "B": False, "D": False, "E": True}
    assert labels.loc["A", "churned"] == 0 and labels.loc["E", "churned"] == 1
    assert labels.loc[["B", "D"], "churned"].isna().all()
    assert str(labels["churned"].dtype) == "Int64"
    # A horizon of 3 days ends before A's next purchase (4 March): A churns.
    assert churn_labels(tiny, T, horizon_days=3).set_index("customer_id").loc["A", "churned"] == 1


def test_hand_computed_interactions(tiny: Settings) -> None:
    inter = interactions(tiny, T).set_index(["customer_id", "item_id"])["weight"]
    decay = lambda days: 0.5 ** (days / 120)  # noqa: E731  (features.interactions.half_life_days: 120)
    assert inter[("A", "i1")] == pytest.approx(8 * decay(58.5) + 8 * decay(19) - 4 * decay(9))
    assert inter[("A", "i2")] == pytest.approx(8 * decay(58.5) + 1 * decay(14))
    assert ("C", "i2") not in inter.index  # after the cutoff
    later = interactions(tiny, T, start="2025-02-01").set_index(["customer_id", "item_id"])["weight"]
    assert later[("A", "i2")] == pytest.approx(decay(14))


def test_interactions_drop_pairs_at_or_below_min_weight(tmp_path: Path) -> None:
    tables = tiny_tables()
    settings = write_workspace(
        tmp_path / "ws",
        tables,
        features={
            "interactions": {"event_weights": {"view": 1.0, "purchase": 1.0, "return": -10.0}, "half_life_days": 1e9}
        },
    )
    inter = interactions(settings, T)
    assert ("A", "i1") not in set(zip(inter["customer_id"], inter["item_id"]))  # 2 purchases, 1 return
    assert (inter["weight"] > 0).all()


def test_only_events_present_gives_event_features_without_empty_columns(tmp_path: Path) -> None:
    settings = write_workspace(tmp_path / "ws", {"events": tiny_tables()["events"]})
    f = customer_features(settings, T)
    assert list(f["customer_id"]) == ["A", "B", "D", "E"]
    for absent in [
        "tenure_days",
        "region",
        "loyalty_tier",
        "open_tickets",
        "nps_last",
        "offers_received",
        "category_breadth",
    ]:
        assert absent not in f.columns
    # Nobody in the tiny data has three purchase days, or events both in the last 90 days and before, so only the
    # gap spread and the channel shift are legitimately empty here.
    assert f.drop(columns=["customer_id", "gap_std_days", "channel_shift"]).notna().any().all()
    assert f.set_index("customer_id").loc["A", "returns_rate"] == pytest.approx(0.25)


def test_every_feature_has_a_description(tmp_path: Path) -> None:
    settings = write_workspace(tmp_path / "ws", random_tables(seed=1))
    f = customer_features(settings, "2025-05-01")
    for name in f.columns.drop("customer_id"):
        value = f[name].iloc[0]
        text = FEATURE_DESCRIPTIONS[name].format(value=value if isinstance(value, str) else float(value))
        assert text and "{" not in text


def test_features_are_cached_until_a_table_changes(tiny: Settings) -> None:
    first = customer_features(tiny, T)
    path = tiny.features_dir / "customer_features_2025-03-01.parquet"
    assert path.exists()
    pd.testing.assert_frame_equal(customer_features(tiny, T), first)  # read back from the cache
    tables = tiny_tables()
    tables["events"] = tables["events"][tables["events"]["event_id"] != "e3"]
    write_workspace(tiny.workspace, {"events": tables["events"]})
    changed = customer_features(tiny, T).set_index("customer_id")
    assert changed.loc["A", "orders_total"] == 1


def test_data_end_and_cutoff_plan(tiny: Settings) -> None:
    assert data_end(tiny) == ts("2025-06-10")
    plan = cutoff_plan(tiny)
    assert plan.current == ts("2025-06-10")
    assert plan.test == ts("2025-06-10") - pd.Timedelta(days=90)
    assert plan.valid == ts("2025-06-10") - pd.Timedelta(days=180)
    assert plan.train == sorted(plan.train) and plan.train[-1] < plan.valid


def test_cutoff_must_be_a_date() -> None:
    assert as_cutoff("2025-03-01") == T
    with pytest.raises(ValueError, match="cutoff"):
        as_cutoff("2025-03-01 12:00")


def test_training_set_stacks_active_customers(tiny: Settings) -> None:
    cutoffs = [ts("2025-02-01"), T]
    train = training_set(tiny, cutoffs)
    assert list(train.columns[:2]) == ["customer_id", "cutoff"] and train.columns[-1] == "churned"
    assert set(zip(train["cutoff"], train["customer_id"])) == {
        (ts("2025-02-01"), "A"),
        (ts("2025-02-01"), "E"),
        (T, "A"),
        (T, "E"),
    }
    assert train["churned"].dtype == np.int64
    assert isinstance(train["loyalty_tier"].dtype, pd.CategoricalDtype)
    row = train[(train["cutoff"] == T) & (train["customer_id"] == "A")].iloc[0]
    assert row["orders_total"] == 2 and row["churned"] == 0
    with pytest.raises(ValueError, match="label window"):
        training_set(tiny, [ts("2025-05-01")])


def test_build_features_writes_files_and_summary(tiny: Settings) -> None:
    report = build_features(tiny, cutoff=T.date(), horizon_days=90)
    assert (report.customers, report.active, report.churned) == (4, 2, 1)
    assert report.base_rate == 0.5 and report.label_window_complete
    names = sorted(p.name for p in tiny.features_dir.glob("*.parquet"))
    assert names == [
        "customer_features_2025-03-01.parquet",
        "interactions_2025-03-01.parquet",
        "labels_2025-03-01.parquet",
    ]
    labels = pd.read_parquet(tiny.features_dir / "labels_2025-03-01.parquet")
    assert labels["active"].sum() == 2
    text = report.summary()
    assert "customers 4, active 2, churn base rate 50.0%" in text and f"features {report.features}" in text


def test_cli_build_defaults_to_the_end_of_the_data(tiny: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from patron.cli.main import app

    monkeypatch.setenv("PATRON_HOME", str(tiny.workspace))
    result = CliRunner().invoke(app, ["features", "build", "--horizon", "30"])
    assert result.exit_code == 0, result.output
    assert "cutoff 2025-06-10" in result.output and "label window runs past the end" in result.output
    assert (tiny.features_dir / "labels_2025-06-10.parquet").exists()
