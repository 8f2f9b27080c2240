"""Churn alerts: an upward risk-tier crossing becomes one alert per customer per period, kept in an append-only log
shared by every worker and delivered to the CRM webhook from a background thread, retried with exponential backoff."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import httpx

from features.privacy.pseudonyms import log_id
from patron.config import AlertsConfig, ChurnConfig, Settings

logger = logging.getLogger("bentoml.patron.alerts")
AT_FORMAT = "%Y-%m-%dT%H:%M:%S.%f"  # UTC without zone, fixed width: sorts and compares as text
Alert = dict[str, Any]


def utc_now() -> datetime:
    """Now in UTC, without time zone (the contract's convention)."""
    return datetime.now(UTC).replace(tzinfo=None)


def tier_rank(tier: str, churn: ChurnConfig) -> int:
    """Position of a risk tier from the lowest (0) up, by its lower bound."""
    return sorted(churn.risk_tiers, key=churn.risk_tiers.__getitem__).index(tier)


def crossed_up(old_tier: str, new_tier: str, churn: ChurnConfig) -> bool:
    """True when the new tier is riskier than the old one (a fall in risk raises no alert)."""
    return tier_rank(new_tier, churn) > tier_rank(old_tier, churn)


def backoff_delays(cfg: AlertsConfig) -> list[float]:
    """Seconds to wait before each retry: backoff_s, then multiplied by backoff_factor, max_retries of them."""
    return [cfg.backoff_s * cfg.backoff_factor**n for n in range(cfg.max_retries)]


def deliver(
    alert: Alert, post: Callable[[Alert], None], delays: list[float], sleep: Callable[[float], None] = time.sleep
) -> tuple[bool, int, str | None]:
    """Post the alert until it succeeds or the retries run out: (delivered, attempts, last error)."""
    attempts, error = 0, None
    for delay in [0.0, *delays]:
        if attempts:
            sleep(delay)
        attempts += 1
        try:
            post(alert)
            return True, attempts, None
        except Exception as exc:  # noqa: BLE001 - any failure of the receiver is retried
            error = f"{type(exc).__name__}: {exc}"
    return False, attempts, error


def webhook_poster(url: str, timeout_s: float) -> Callable[[Alert], None]:
    """A function posting an alert as JSON to `url`, raising on a transport error or a non-2xx answer."""

    def post(alert: Alert) -> None:
        httpx.post(url, json=alert, timeout=timeout_s).raise_for_status()

    return post


class AlertLog:
    """Append-only JSON lines: alert records and delivery outcomes; an exclusive file lock orders every worker."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def _locked(self, exclusive: bool) -> Iterator[IO[str]]:
        with self.path.open("a+", encoding="utf-8") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            try:
                yield fh
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    @staticmethod
    def _read(fh: IO[str]) -> list[dict[str, Any]]:
        fh.seek(0)
        records = []
        for line in fh:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:  # a line torn by a crash mid-write: skipped, the rest still counts
                continue
        return records

    @staticmethod
    def _append(fh: IO[str], record: dict[str, Any]) -> None:
        fh.seek(0, os.SEEK_END)
        torn = fh.tell() > 0 and not _ends_with_newline(fh)
        fh.write(("\n" if torn else "") + json.dumps(record) + "\n")
        fh.flush()
        os.fsync(fh.fileno())  # the alert survives a crash once add_unless_recent returned True

    def add_unless_recent(self, alert: Alert, min_interval: timedelta) -> bool:
        """Append the alert unless the customer had one less than `min_interval` before it; True when added."""
        with self._locked(exclusive=True) as fh:
            last = max(
                (
                    r["at"]
                    for r in self._read(fh)
                    if r.get("record") == "alert" and r["customer_id"] == alert["customer_id"]
                ),
                default=None,
            )
            if last is not None and datetime.fromisoformat(alert["at"]) - datetime.fromisoformat(last) < min_interval:
                return False
            self._append(fh, {"record": "alert", **alert})
        return True

    def record_delivery(self, alert_id: str, delivery: str, attempts: int, last_error: str | None) -> None:
        """Append a delivery outcome; the latest one of an alert is the one shown."""
        with self._locked(exclusive=True) as fh:
            self._append(
                fh,
                {
                    "record": "delivery",
                    "alert_id": alert_id,
                    "delivery": delivery,
                    "attempts": attempts,
                    "last_error": last_error,
                },
            )

    def remove_customers(self, customer_ids: set[str]) -> int:
        """Rewrite the log without the customers' alerts and their delivery outcomes; returns the alerts removed."""
        if not self.path.exists():
            return 0
        with self._locked(exclusive=True) as fh:
            records = self._read(fh)
            gone = {r["alert_id"] for r in records if r.get("record") == "alert" and r["customer_id"] in customer_ids}
            if gone:  # in place, under the lock: a rename would leave waiting writers on the old file
                fh.seek(0)
                fh.truncate()
                fh.write("".join(json.dumps(r) + "\n" for r in records if r.get("alert_id") not in gone))
                fh.flush()
                os.fsync(fh.fileno())
        return len(gone)

    def alerts(self, since: datetime | None = None, limit: int = 100) -> list[Alert]:
        """Alerts raised at or after `since`, oldest first, at most `limit`, with their latest delivery outcome."""
        if not self.path.exists():
            return []
        with self._locked(exclusive=False) as fh:
            records = self._read(fh)
        outcome = {r["alert_id"]: r for r in records if r.get("record") == "delivery"}
        floor = since.strftime(AT_FORMAT) if since is not None else ""
        out = []
        for r in records:
            if r.get("record") != "alert" or r["at"] < floor:
                continue
            alert = {k: v for k, v in r.items() if k != "record"}
            if r["alert_id"] in outcome:
                alert.update({k: outcome[r["alert_id"]][k] for k in ("delivery", "attempts", "last_error")})
            out.append(alert)
            if len(out) == limit:
                break
        return out


def _ends_with_newline(fh: IO[str]) -> bool:
    end = fh.tell()
    fh.seek(end - 1)
    last = fh.read(1)
    fh.seek(end)
    return last == "\n"


class AlertDispatcher:
    """Raises alerts on upward tier crossings and delivers them on a daemon thread, never on the request path."""

    def __init__(
        self,
        settings: Settings,
        post: Callable[[Alert], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.cfg = settings.alerts
        self.churn = settings.churn
        self.log = AlertLog(settings.alerts_log)
        self._settings = settings
        self._post = post or (
            webhook_poster(self.cfg.webhook_url, self.cfg.timeout_s) if self.cfg.webhook_url else None
        )
        self._sleep = sleep
        self._queue: queue.Queue[Alert] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def consider(
        self,
        customer_id: str,
        before: dict[str, Any],
        after: dict[str, Any],
        signals: list[str],
        model_version: str,
        best_offer: dict[str, Any] | None = None,
    ) -> Alert | None:
        """Record (and queue for delivery) an alert when `after` is a riskier tier than `before`; None otherwise."""
        if not crossed_up(before["risk_tier"], after["risk_tier"], self.churn):
            return None
        alert = {
            "alert_id": uuid.uuid4().hex,
            "customer_id": customer_id,
            "old_tier": before["risk_tier"],
            "new_tier": after["risk_tier"],
            "old_probability": float(before["churn_probability"]),
            "churn_probability": float(after["churn_probability"]),
            "reasons": after["reasons"],
            "risk_reasons": after.get("risk_reasons", []),
            "signals": signals,
            "best_offer": best_offer,
            "at": utc_now().strftime(AT_FORMAT),
            "model_version": model_version,
            "delivery": "pending" if self._post else "off",
            "attempts": 0,
            "last_error": None,
        }
        if not self.log.add_unless_recent(alert, timedelta(hours=self.cfg.min_interval_hours)):
            return None
        if self._post is not None:
            self._ensure_thread()
            self._queue.put(alert)
        return alert

    def _ensure_thread(self) -> None:
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="patron-alerts", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        delays = backoff_delays(self.cfg)
        while True:
            alert = self._queue.get()
            ok, attempts, error = deliver(alert, self._post, delays, self._sleep)
            if not ok:
                logger.warning(
                    "alert %s for %s not delivered after %d attempts: %s",
                    alert["alert_id"],
                    log_id(self._settings, alert["customer_id"]),
                    attempts,
                    error,
                )
            try:
                self.log.record_delivery(alert["alert_id"], "delivered" if ok else "failed", attempts, error)
            except OSError as exc:
                logger.warning("alert %s: delivery outcome not logged: %s", alert["alert_id"], exc)
            self._queue.task_done()

    def drain(self, timeout_s: float) -> bool:
        """Wait until every queued alert has an outcome (tests, shutdown); False when time ran out."""
        deadline = time.monotonic() + timeout_s
        while self._queue.unfinished_tasks:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True
