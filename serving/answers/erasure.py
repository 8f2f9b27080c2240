"""Erasing customers everywhere the service keeps them, and the per-request check that hides erased customers."""

from __future__ import annotations

from dataclasses import dataclass, field

from features.privacy.erasure import erased_keys, record_erasure, scrub_workspace
from features.privacy.pseudonyms import customer_key
from patron.config import Settings
from serving.answers.alerts import AlertLog
from serving.online.store import OnlineStore

# What the service answers erased customers with: an id no customer has, so they get an unknown customer's answer.
NOBODY = "\x00erased"


@dataclass
class ErasureReport:
    """What one erasure removed."""

    customers: int
    newly_erased: int  # not in the erasure log before
    rows_removed: dict[str, int] = field(default_factory=dict)  # workspace-relative file -> rows
    online_rows_removed: int = 0
    alerts_removed: int = 0

    def summary(self) -> str:
        """One line per file changed, then the totals."""
        lines = [f"  {path}: {n} rows" for path, n in sorted(self.rows_removed.items())]
        return "\n".join(
            [
                *lines,
                f"erased {self.customers} customers ({self.newly_erased} new): "
                f"{sum(self.rows_removed.values())} rows from {len(self.rows_removed)} workspace files, "
                f"{self.online_rows_removed} from the online store, {self.alerts_removed} alerts",
            ]
        )


def erase_customers(settings: Settings, customer_ids: list[str], store: OnlineStore | None) -> ErasureReport:
    """Forget customers: the erasure log first (a crash midway is finished by running it again), then the online
    store (from then on every worker answers for them as for unknown customers), the alerts log and every workspace
    file holding their rows (tables, quarantine, feature caches, batch outputs)."""
    ids = list(dict.fromkeys(str(c).strip() for c in customer_ids if str(c).strip()))
    if not ids:
        raise ValueError("customer_ids: give at least one customer id")
    report = ErasureReport(customers=len(ids), newly_erased=len(record_erasure(settings, ids)))
    if store is not None:
        report.online_rows_removed = store.forget(ids, [customer_key(settings, c) for c in ids])
    report.alerts_removed = AlertLog(settings.alerts_log).remove_customers(set(ids))
    report.rows_removed = scrub_workspace(settings, set(ids))
    return report


class ErasedCustomers:
    """Erased customers as every worker sees them: the erasure log at start-up plus the online store's erased set,
    re-read only when its size changes (one cheap store call per check)."""

    def __init__(self, settings: Settings, store: OnlineStore) -> None:
        self.settings = settings
        self.store = store
        self._logged = erased_keys(settings)
        self._count = -1
        self._keys: frozenset[str] = self._logged

    def among(self, customer_ids: list[str]) -> set[str]:
        """The erased customers among `customer_ids`."""
        count = self.store.erased_count()
        if count != self._count:
            self._keys, self._count = self._logged | self.store.erased_keys(), count
        if not self._keys:
            return set()
        return {c for c in customer_ids if customer_key(self.settings, c) in self._keys}

    def masked(self, customer_ids: list[str]) -> list[str]:
        """`customer_ids` with each erased customer replaced by NOBODY (answers as for an unknown customer)."""
        gone = self.among(customer_ids)
        return [NOBODY if c in gone else c for c in customer_ids] if gone else list(customer_ids)
