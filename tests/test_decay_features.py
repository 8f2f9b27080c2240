"""Decayed-count and activity-cadence customer features, hand-computed on the tiny example of test_features."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from features.pit.build import customer_features
from tests.test_features import T, _events, tiny_tables
from tests.test_features_tables import write_workspace


def _half(days: float, h: int) -> float:
    return 0.5 ** (days / h)


def test_decayed_counts_and_cadence_are_hand_computed(tmp_path: Path) -> None:
    tables = tiny_tables()
    carts = _events(
        [
            ("c1", "E", "i1", "2025-01-15 10:00", "cart", 1, 10.0, "online", None),  # not bought: missed
            ("c2", "E", "i2", "2025-01-15 09:00", "cart", 1, 20.0, "online", None),  # bought that day
            ("c3", "E", "i1", "2025-03-01 00:00", "cart", 1, 10.0, "online", None),
        ]
    )  # at the cutoff
    tables["events"] = pd.concat([tables["events"], carts], ignore_index=True)
    f = customer_features(write_workspace(tmp_path / "ws", tables), T).set_index("customer_id")
    a, e = f.loc["A"], f.loc["E"]
    # A, before 2025-03-01: purchase days Jan 1 and Feb 10 (59 and 19 days), a view Feb 15 (14), a return Feb 20 (9)
    assert a["activity_days_total"] == 4
    assert a["activity_days_rate"] == pytest.approx(4 / 59)
    assert a["activity_days_overdue"] == pytest.approx(9 * 4 / 59)
    assert a["purchase_days_decayed_30d"] == pytest.approx(_half(59, 30) + _half(19, 30))
    assert a["activity_days_decayed_45d"] == pytest.approx(sum(_half(d, 45) for d in (59, 19, 14, 9)))
    assert a["returns_decayed_30d"] == pytest.approx(_half(9, 30))
    # tickets opened Feb 1, 20, 25 (Mar 3 is after the cutoff); only Feb 20 was still unresolved a week after opening
    # as far as the cutoff knows (Feb 25 is not yet a week old)
    assert a["tickets_decayed_30d"] == pytest.approx(_half(28, 30) + _half(9, 30) + _half(4, 30))
    assert a["slow_tickets_decayed_45d"] == pytest.approx(_half(9, 45))
    assert a["missed_carts_decayed_30d"] == 0
    # E: one purchase day 45 days back; one cart of an item not bought that day, one bought; one at the cutoff
    assert e["purchase_days_decayed_45d"] == pytest.approx(0.5)
    assert e["missed_carts_decayed_45d"] == pytest.approx(0.5)
    assert f.loc["B", "tickets_decayed_30d"] == 0 and f.loc["B", "returns_decayed_45d"] == 0
