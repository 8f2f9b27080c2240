"""No leakage: records at or after the cutoff never change features; events from t + horizon on never change labels."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from features.pit.build import churn_labels, customer_features, interactions
from features.tables.contract import CHANNELS, EVENT_TYPES, LOYALTY_TIERS, TICKET_CATEGORIES
from patron.config import Settings
from tests.test_features_tables import START, random_tables, write_workspace

OPTIONAL = ("customers", "products", "tickets", "surveys", "loyalty", "offers")
_counter = itertools.count()


def _later(rng: np.random.Generator, t: pd.Timestamp, n: int, days: int = 150) -> pd.Series:
    """n timestamps at or after t (t itself included now and then)."""
    seconds = rng.integers(0, days * 86400, size=n)
    seconds[rng.random(n) < 0.1] = 0
    return pd.Series(t + pd.to_timedelta(seconds, unit="s"), dtype="datetime64[ns]")


def _null_or_later(rng: np.random.Generator, t: pd.Timestamp, n: int) -> pd.Series:
    return _later(rng, t, n).mask(rng.random(n) < 0.4)


def perturb_after(
    tables: dict[str, pd.DataFrame], t: pd.Timestamp, seed: int, which: set[str]
) -> dict[str, pd.DataFrame]:
    """A copy of the tables where records (or parts of records) dated at or after t are added or changed."""
    rng = np.random.default_rng(seed)
    out = {k: v.copy() for k, v in tables.items()}
    known = sorted(out["customers"]["customer_id"]) if "customers" in out else sorted(out["events"]["customer_id"])
    items = sorted(out["events"]["item_id"].unique())
    if "new_customers" in which and "customers" in out:
        new = random_tables(seed, customers=3, events=20, start=t, prefix="n")
        new["customers"]["signup_date"] = _later(rng, t, 3).dt.normalize().where(lambda s: s >= t, t)
        new["customers"]["region"] = rng.choice(sorted(out["customers"]["region"].unique()), size=3)
        new["events"]["item_id"] = rng.choice(items, size=len(new["events"]))
        for name in ("customers", "events", "tickets", "surveys", "loyalty", "offers"):
            if name in out:
                out[name] = pd.concat([out[name], new[name]], ignore_index=True)
        known = known + sorted(new["customers"]["customer_id"])
    if "events" in which:
        ev = out["events"]
        late = ev["ts"] >= t
        k = int(late.sum())
        ev.loc[late, "ts"] = _later(rng, t, k).to_numpy()
        ev.loc[late, "type"] = rng.choice(EVENT_TYPES, size=k)
        ev.loc[late, "channel"] = rng.choice(CHANNELS, size=k)
        ev.loc[late, "item_id"] = rng.choice(items, size=k)
        n = 15
        added = pd.DataFrame(
            {
                "event_id": [f"x{seed}_{i}" for i in range(n)],
                "customer_id": rng.choice(known, size=n),
                "item_id": rng.choice(items, size=n),
                "ts": _later(rng, t, n),
                "type": rng.choice(EVENT_TYPES, size=n),
                "quantity": pd.array(rng.integers(1, 5, n), dtype="Int64"),
                "unit_price": rng.uniform(1, 99, n),
                "channel": rng.choice(CHANNELS, size=n),
                "order_id": [f"xo{i}" for i in rng.integers(0, 5, n)],
            }
        )
        out["events"] = pd.concat([ev, added], ignore_index=True)
    if "tickets" in which and "tickets" in out:
        tk = out["tickets"]
        unresolved = tk["resolved_at"].isna() | (tk["resolved_at"] >= t)
        tk.loc[unresolved, "resolved_at"] = _null_or_later(rng, t, int(unresolved.sum())).to_numpy()
        tk.loc[unresolved, "satisfaction"] = pd.array(rng.integers(1, 6, int(unresolved.sum())), dtype="Int64")
        n = 4
        opened = _later(rng, t, n)
        added = pd.DataFrame(
            {
                "ticket_id": [f"xt{seed}_{i}" for i in range(n)],
                "customer_id": rng.choice(known, size=n),
                "opened_at": opened,
                "resolved_at": opened + pd.Timedelta(days=2),
                "category": rng.choice(TICKET_CATEGORIES, size=n),
                "satisfaction": pd.array(rng.integers(1, 6, n), dtype="Int64"),
            }
        )
        out["tickets"] = pd.concat([tk, added], ignore_index=True)
    if "surveys" in which and "surveys" in out:
        n = 4
        added = pd.DataFrame(
            {
                "customer_id": rng.choice(known, size=n),
                "ts": _later(rng, t, n),
                "nps": pd.array(rng.integers(0, 11, n), dtype="Int64"),
                "csat": pd.array(rng.integers(1, 6, n), dtype="Int64"),
            }
        )
        out["surveys"] = pd.concat([out["surveys"], added], ignore_index=True).drop_duplicates(["customer_id", "ts"])
    if "loyalty" in which and "loyalty" in out:
        ly = out["loyalty"]
        late = ly["ts"] >= t
        ly.loc[late, "tier_after"] = rng.choice(LOYALTY_TIERS, size=int(late.sum()))
        n = 4
        added = pd.DataFrame(
            {
                "customer_id": rng.choice(known, size=n),
                "ts": _later(rng, t, n),
                "points_delta": pd.array(rng.integers(-100, 500, n), dtype="Int64"),
                "tier_after": rng.choice(LOYALTY_TIERS, size=n),
            }
        )
        out["loyalty"] = pd.concat([ly, added], ignore_index=True).drop_duplicates(["customer_id", "ts"])
    if "offers" in which and "offers" in out:
        of = out["offers"]
        pending = of["redeemed_at"].isna() | (of["redeemed_at"] >= t)
        of.loc[pending, "redeemed_at"] = _null_or_later(rng, t, int(pending.sum())).to_numpy()
        n = 3
        sent = _later(rng, t, n)
        added = pd.DataFrame(
            {
                "offer_id": [f"xf{seed}_{i}" for i in range(n)],
                "customer_id": rng.choice(known, size=n),
                "sent_at": sent,
                "offer_type": "discount_voucher",
                "cost": 3.0,
                "randomized": True,
                "redeemed_at": sent + pd.Timedelta(days=1),
            }
        )
        out["offers"] = pd.concat([of, added], ignore_index=True)
    return out


def _workspace(base: Path, tables: dict[str, pd.DataFrame], **overrides) -> Settings:
    return write_workspace(base / f"ws{next(_counter)}", tables, **overrides)


@hsettings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 10_000),
    cutoff_day=st.integers(20, 190),
    drop=st.sets(st.sampled_from(OPTIONAL), max_size=3),
    which=st.sets(st.sampled_from(["new_customers", "events", "tickets", "surveys", "loyalty", "offers"]), min_size=1),
)
def test_records_at_or_after_the_cutoff_never_change_features(
    tmp_path: Path, seed: int, cutoff_day: int, drop: set[str], which: set[str]
) -> None:
    t = START + pd.Timedelta(days=cutoff_day)
    tables = {k: v for k, v in random_tables(seed).items() if k not in drop}
    changed = perturb_after(tables, t, seed + 1, which)
    # A re-buy rule loose enough for these few customers to have re-bought categories (the defaults need 20 gaps).
    rebuy = {"rebuy_min_gaps": 1, "rebuy_same_item_share": 0.0}
    before = customer_features(_workspace(tmp_path, tables, features=rebuy), t)
    after = customer_features(_workspace(tmp_path, changed, features=rebuy), t)
    pd.testing.assert_frame_equal(before, after)


@hsettings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), cutoff_day=st.integers(20, 120), horizon=st.integers(5, 60))
def test_labels_ignore_events_at_or_after_the_horizon_and_before_the_lookback(
    tmp_path: Path, seed: int, cutoff_day: int, horizon: int
) -> None:
    t = START + pd.Timedelta(days=cutoff_day)
    lookback = 30
    tables = random_tables(seed)
    rng = np.random.default_rng(seed)
    changed = perturb_after(tables, t, seed + 1, {"new_customers"})
    changed = perturb_after(changed, t + pd.Timedelta(days=horizon), seed + 2, {"events"})
    # Events before t - lookback may change in every way but their customer and their being before it.
    ev = changed["events"]
    early = ev["ts"] < t - pd.Timedelta(days=lookback)
    ev.loc[early, "type"] = rng.choice(EVENT_TYPES, size=int(early.sum()))
    ev.loc[early, "item_id"] = rng.choice(sorted(ev["item_id"].unique()), size=int(early.sum()))
    config = {"features": {"lookback_days": lookback}}
    old = churn_labels(_workspace(tmp_path, tables, **config), t, horizon)
    new = churn_labels(_workspace(tmp_path, changed, **config), t, horizon)
    pd.testing.assert_frame_equal(old, new)
    assert old["churned"].isna().equals(~old["active"])


@hsettings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), cutoff_day=st.integers(20, 190))
def test_events_at_or_after_the_cutoff_never_change_interactions(tmp_path: Path, seed: int, cutoff_day: int) -> None:
    t = START + pd.Timedelta(days=cutoff_day)
    tables = random_tables(seed)
    changed = perturb_after(tables, t, seed + 1, {"events", "new_customers"})
    pd.testing.assert_frame_equal(
        interactions(_workspace(tmp_path, tables), t), interactions(_workspace(tmp_path, changed), t)
    )


def test_the_perturbation_really_changes_data_after_the_cutoff(tmp_path: Path) -> None:
    """Guard against a vacuous property: the same perturbation at a later cutoff does change features."""
    t = START + pd.Timedelta(days=60)
    tables = random_tables(7)
    changed = perturb_after(tables, t, 8, {"events", "tickets", "loyalty", "offers", "new_customers"})
    later = t + pd.Timedelta(days=200)
    before = customer_features(_workspace(tmp_path, tables), later)
    after = customer_features(_workspace(tmp_path, changed), later)
    with pytest.raises(AssertionError):
        pd.testing.assert_frame_equal(before, after)
