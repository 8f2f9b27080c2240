"""Churn features of one customer brought up to date with the service signals recorded online since the batch cutoff.

The batch feature row (the one /churn serves) covers everything before its cutoff; tickets, survey answers, purchases
and returns recorded online at or after the cutoff are folded into the features they touch. "Now" for those features
is the later of the cutoff and the customer's latest live signal; every other feature stays as of the cutoff.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from features.pit.build import data_end
from features.pit.customer_features import FEATURE_DESCRIPTIONS, FEATURE_GROUPS, GROUP_PHRASES
from features.tables.contract import TICKET_CATEGORIES
from patron.config import Settings
from serving.answers.alerts import AlertDispatcher, crossed_up
from serving.answers.churn_scoring import TOP_REASONS, group_text, score_frame
from serving.online.state import OnlineState
from serving.online.store import Event, Signal, signal_key

_DECAYED_TICKETS = re.compile(r"tickets_decayed_(\d+)d")  # features/pit/customer_features.py's decayed ticket counts
RESCORING_EVENT_TYPES = ("return",)  # event types that count as service signals and trigger a rescoring


def _ts(text: str | None) -> pd.Timestamp | None:
    return None if text is None else pd.Timestamp(text)


def _days(start: pd.Timestamp, end: pd.Timestamp) -> float:
    return max(0.0, (end - start).total_seconds() / 86400.0)


def _num(value: Any) -> float:
    """The feature value as a float, NaN when missing."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out


def _blend(old_mean: float, old_n: float, new: list[float]) -> float:
    """Mean of `old_n` values averaging `old_mean` and the new values (the old part dropped when unknown)."""
    if not new:
        return old_mean
    if math.isnan(old_mean) or old_n <= 0:
        return sum(new) / len(new)
    return (old_mean * old_n + sum(new)) / (old_n + len(new))


def _fold_tickets(
    row: _Row, tickets: list[Signal], now: pd.Timestamp, cutoff: pd.Timestamp, windows: list[int]
) -> None:
    old_total, old_open = _num(row.get("tickets_total", 0)), _num(row.get("open_tickets", 0))
    opened = [_ts(t["opened_at"]) for t in tickets]
    resolved = [_ts(t["resolved_at"]) for t in tickets]
    row["tickets_total"] = old_total + len(tickets)
    for w in windows:
        if f"tickets_{w}d" in row.index:
            # Batch tickets still inside the window are kept; those that left it by `now` cannot be told apart.
            row[f"tickets_{w}d"] = _num(row[f"tickets_{w}d"]) + sum(o >= now - pd.Timedelta(days=w) for o in opened)
    for c in TICKET_CATEGORIES:
        if f"tickets_{c}" in row.index:
            row[f"tickets_{c}"] = _num(row[f"tickets_{c}"]) + sum(t["category"] == c for t in tickets)
    still_open = [o for o, r in zip(opened, resolved) if r is None or r > now]
    row["open_tickets"] = old_open + len(still_open)
    ages = [_days(o, now) for o in still_open]
    old_age = _num(row.get("open_ticket_age_days"))
    if not math.isnan(old_age):
        ages.append(old_age + _days(cutoff, now))
    row["open_ticket_age_days"] = max(ages) if ages else math.nan
    done = [(o, r, t.get("satisfaction")) for o, r, t in zip(opened, resolved, tickets) if r is not None and r <= now]
    old_resolved = old_total - old_open
    row["resolution_days_mean"] = _blend(
        _num(row.get("resolution_days_mean")), old_resolved, [_days(o, r) for o, r, _ in done]
    )
    row["ticket_satisfaction_mean"] = _blend(
        _num(row.get("ticket_satisfaction_mean")), old_resolved, [float(s) for _, _, s in done if s is not None]
    )
    row["days_since_last_ticket"] = _days(max(opened), now)
    for col, h in _decayed_ticket_columns(row.index):
        # The batch sum decays from the cutoff to now, and each live ticket adds its own weight (as the batch would).
        row[col] = _num(row[col]) * 0.5 ** (_days(cutoff, now) / h) + sum(0.5 ** (_days(o, now) / h) for o in opened)


def _fold_surveys(row: _Row, surveys: list[Signal], now: pd.Timestamp) -> None:
    for col in ("nps", "csat"):
        answers = [float(s[col]) for s in sorted(surveys, key=lambda s: s["ts"]) if s.get(col) is not None]
        if not answers:
            continue
        old_last = _num(row.get(f"{col}_last"))
        history = ([] if math.isnan(old_last) else [old_last]) + answers
        row[f"{col}_last"] = history[-1]
        row[f"{col}_trend"] = history[-1] - history[-2] if len(history) > 1 else math.nan
    row["days_since_last_survey"] = _days(max(_ts(s["ts"]) for s in surveys), now)


def _fold_returns(row: _Row, events: list[Event]) -> None:
    # Units bought are not a feature: orders x mean basket size stands in for the batch part.
    bought = _num(row.get("orders_total", 0)) * _num(row.get("basket_size_mean", 0))
    bought = 0.0 if math.isnan(bought) else bought
    rate = _num(row.get("returns_rate"))
    returned = 0.0 if math.isnan(rate) else rate * bought
    bought += sum(e.get("quantity") or 1 for e in events if e["type"] == "purchase")
    returned += sum(e.get("quantity") or 1 for e in events if e["type"] == "return")
    row["returns_rate"] = returned / bought if bought > 0 else math.nan


def _decayed_ticket_columns(columns: pd.Index | list[str]) -> list[tuple[str, int]]:
    """(column, half-life in days) of the decayed ticket counts (`tickets_decayed_{h}d`) among `columns`."""
    return [(c, int(m.group(1))) for c in columns if (m := _DECAYED_TICKETS.fullmatch(c))]


class _Row(dict):
    """Changed features over a read-only batch row: reads fall back to the row, writes stay here."""

    def __init__(self, row: pd.Series) -> None:
        super().__init__()
        self.row = row
        self.index = row.index

    def __missing__(self, key: str) -> Any:
        return self.row[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key in self or key in self.index else default


def live_feature_row(
    row: pd.Series,
    cutoff: pd.Timestamp,
    windows: list[int],
    tickets: list[Signal],
    surveys: list[Signal],
    events: list[Event],
) -> dict[str, Any]:
    """The batch row's values with the live tickets, survey answers, purchases and returns since `cutoff` folded in
    (a mapping that reads through to `row`)."""
    tickets = [t for t in tickets if _ts(t["opened_at"]) >= cutoff]
    surveys = [s for s in surveys if _ts(s["ts"]) >= cutoff]
    events = [e for e in events if e["type"] in ("purchase", "return") and _ts(e["ts"]) >= cutoff]
    # A ticket that arrives resolved was resolved by the time it arrived: its resolution counts as known now.
    times = (
        [_ts(t["opened_at"]) for t in tickets]
        + [_ts(t["resolved_at"]) for t in tickets if t["resolved_at"]]
        + [_ts(s["ts"]) for s in surveys]
        + [_ts(e["ts"]) for e in events]
    )
    now = max([cutoff, *times])
    # A plain dict of the features that can change (reading the rest from `row`) is much faster than a Series copy.
    out = _Row(row)
    if tickets:
        _fold_tickets(out, tickets, now, cutoff, windows)
    if surveys:
        _fold_surveys(out, surveys, now)
    if any(e["type"] == "return" for e in events):
        _fold_returns(out, events)
    return out


def touched_features(windows: list[int], half_lives: list[int] = ()) -> list[str]:
    """Every feature live signals can change (`half_lives`: those of the decayed ticket counts)."""
    return [
        *[f"tickets_decayed_{h}d" for h in half_lives],
        "tickets_total",
        *[f"tickets_{w}d" for w in windows],
        *[f"tickets_{c}" for c in TICKET_CATEGORIES],
        "open_tickets",
        "open_ticket_age_days",
        "resolution_days_mean",
        "ticket_satisfaction_mean",
        "days_since_last_ticket",
        "nps_last",
        "nps_trend",
        "csat_last",
        "csat_trend",
        "days_since_last_survey",
        "returns_rate",
    ]


def before_and_after(
    frame: pd.DataFrame,
    cutoff: pd.Timestamp,
    windows: list[int],
    tickets: list[Signal],
    surveys: list[Signal],
    events: list[Event],
    new: set[str],
) -> pd.DataFrame:
    """Two feature rows from a customer's one-row batch frame: without the signals keyed in `new`, and with all."""
    row = frame.iloc[0]
    old = live_feature_row(
        row,
        cutoff,
        windows,
        [t for t in tickets if signal_key("tickets", t) not in new],
        [s for s in surveys if signal_key("surveys", s) not in new],
        [e for e in events if e["event_id"] not in new],
    )
    now = live_feature_row(row, cutoff, windows, tickets, surveys, events)
    out = pd.concat([frame, frame], ignore_index=True)
    cols = [c for c in touched_features(windows) if c in out.columns] + [
        c for c, _ in _decayed_ticket_columns(out.columns)
    ]
    out[cols] = np.array([[_num(old[c]) for c in cols], [_num(now[c]) for c in cols]], dtype="float64")
    return out


def change_reasons(booster: Any, rows: pd.DataFrame, num_threads: int = 0) -> list[dict[str, Any]]:
    """Why the second row is riskier than the first: the feature groups with a changed value whose LightGBM
    contributions rose most (summed per group like /churn's reasons; contribution = the rise in log-odds)."""

    names = booster.feature_name()
    X = rows[names]
    # A loaded booster predicts with every OpenMP thread unless told: on two rows that costs more than it saves.
    contrib = booster.predict(X, pred_contrib=True, num_threads=num_threads)[:, : len(names)]
    rise = contrib[1] - contrib[0]
    first, second = X.iloc[0], X.iloc[1]
    changed = {n for n in names if not (first[n] == second[n] or (pd.isna(first[n]) and pd.isna(second[n])))}
    groups: dict[str, list[int]] = {}
    for j, n in enumerate(names):
        groups.setdefault(FEATURE_GROUPS.get(n, n), []).append(j)
    totals = {g: float(rise[js].sum()) for g, js in groups.items() if any(names[j] in changed for j in js)}
    out = []
    for g in sorted((g for g in totals if totals[g] > 0), key=lambda g: -totals[g])[:TOP_REASONS]:
        lead = names[max(groups[g], key=lambda j: rise[j])]
        out.append(
            {
                "feature": lead,
                "group": g,
                "value": _num(rows.iloc[1][lead]),
                "contribution": totals[g],
                "text": group_text(
                    g, [names[j] for j in groups[g]], lead, rows.iloc[1], FEATURE_DESCRIPTIONS, GROUP_PHRASES
                ),
            }
        )
    return out


class LiveChurn:
    """Rescores customers whose service signals just arrived and hands tier crossings to the alert dispatcher."""

    def __init__(self, settings: Settings, dispatcher: AlertDispatcher) -> None:
        self.settings = settings
        self.dispatcher = dispatcher
        self._cutoff: pd.Timestamp | None = None

    def cutoff(self) -> pd.Timestamp:
        """The cutoff of the batch features the service holds (the end of the workspace's events)."""
        if self._cutoff is None:
            self._cutoff = data_end(self.settings)
        return self._cutoff

    def rescore(self, booster: Any, state: OnlineState, customer_id: str, new: set[str]) -> list[dict] | None:
        """Score records of a customer before and after the signals keyed in `new`; None without a batch row."""
        frame = state.customer_features([customer_id])
        if frame.empty or state.store is None:
            return None
        store = state.store
        rows = before_and_after(
            frame,
            self.cutoff(),
            self.settings.features.windows_days,
            store.customer_signals("tickets", customer_id),
            store.customer_signals("surveys", customer_id),
            state.live_events(customer_id, self.settings.online.history_events),
            new,
        )
        before, after = score_frame(booster, rows, self.settings.churn).to_dict("records")
        # The alert says what changed; the model's overall top reasons ride along as risk_reasons.
        threads = self.settings.churn.params.get("num_threads", 0)
        after["risk_reasons"], after["reasons"] = after["reasons"], change_reasons(booster, rows, threads)
        return [before, after]

    def on_signals(
        self,
        booster: Any,
        model_version: str,
        state: OnlineState,
        new: dict[str, set[str]],
        best_offer: Callable[[str], dict | None] | None = None,
    ) -> int:
        """Rescore each customer in `new` (customer -> keys of the signals just stored); returns alerts raised.

        `best_offer` gives a customer's best retention offer, looked up only for a customer whose tier rose."""
        raised = 0
        for customer_id, keys in new.items():
            scores = self.rescore(booster, state, customer_id, keys)
            if scores is None:
                continue
            before, after = scores
            if not crossed_up(before["risk_tier"], after["risk_tier"], self.settings.churn):
                continue
            offer = best_offer(customer_id) if best_offer is not None else None
            if self.dispatcher.consider(customer_id, before, after, sorted(keys), model_version, offer) is not None:
                raised += 1
        return raised


def new_signals(
    events: list[Event],
    events_accepted: bool,
    signals: dict[str, tuple[list[Signal], Any]],
    stored: dict[str, list[str]],
) -> dict[str, set[str]]:
    """customer -> keys of the service signals this request stored (tickets, surveys; returns when any was new)."""
    out: dict[str, set[str]] = {}
    for kind, (rows, _) in signals.items():
        keys = set(stored.get(kind, []))
        for row in rows:
            if signal_key(kind, row) in keys:
                out.setdefault(row["customer_id"], set()).add(signal_key(kind, row))
    if events_accepted:  # the store counts new events, not which ones: a resent return in a batch with new events is
        # rescored as new too (the per-customer alert period bounds what that can cost)
        for e in events:
            if e["type"] in RESCORING_EVENT_TYPES:
                out.setdefault(e["customer_id"], set()).add(e["event_id"])
    return out
