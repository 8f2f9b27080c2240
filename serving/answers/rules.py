"""Merchandising rules (stock, categories, diversity, boosts): from config, overridden live by WORKSPACE/rules.yaml."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import yaml
from pydantic import ValidationError

from patron.config import RulesConfig, Settings
from serving.online.state import OnlineState

logger = logging.getLogger("bentoml.patron")


class RuleBook:
    """The rules in force: the config's `rules` section, with WORKSPACE/rules.yaml merged over it when present."""

    def __init__(self, settings: Settings) -> None:
        self.base = settings.rules
        self.path: Path = settings.rules_file
        self.check_every_s = settings.online.rules_check_s
        self._rules = self.base
        self._mtime: float | None = None
        self._checked = float("-inf")
        self._lock = threading.Lock()
        self.error: str | None = None

    def current(self) -> RulesConfig:
        """The rules now; the file is looked at no more often than `online.rules_check_s`."""
        now = time.monotonic()
        if now - self._checked < self.check_every_s:
            return self._rules
        with self._lock:
            self._checked = now
            try:
                mtime = self.path.stat().st_mtime
            except FileNotFoundError:
                mtime = None
            if mtime != self._mtime:
                self._reload(mtime)
        return self._rules

    def _reload(self, mtime: float | None) -> None:
        try:
            data = {} if mtime is None else (yaml.safe_load(self.path.read_text()) or {})
            self._rules = RulesConfig.model_validate({**self.base.model_dump(), **data})
            self.error = None
            logger.info("rules loaded from %s", self.path if mtime is not None else "config")
        except (OSError, yaml.YAMLError, ValidationError, TypeError) as exc:
            # A broken file keeps the rules that were in force; the error is reported, not raised.
            self.error = f"{self.path}: {exc}"
            logger.warning("rules file rejected, previous rules kept: %s", self.error)
        self._mtime = mtime


def candidates(
    rules: RulesConfig, state: OnlineState, categories: list[str] | None
) -> tuple[frozenset[str], list[str]]:
    """Items an answer may contain under the rules and the request's categories, and the rules that narrowed them
    (the same frozenset while stock and rules stay the same: the recommender caches its item mask per pool)."""
    applied = ["in_stock_only"] if rules.in_stock_only else []
    filters = []
    for name, wanted, keep in (
        ("categories", categories, True),
        ("include_categories", rules.include_categories, True),
        ("exclude_categories", rules.exclude_categories, False),
    ):
        if wanted:
            filters.append((frozenset(wanted), keep))
            applied.append(name)
    return state.item_pool(rules.in_stock_only, tuple(filters)), applied


def needs_overfetch(rules: RulesConfig) -> bool:
    """Whether reranking may drop or reorder items, so more candidates than k are needed."""
    return bool(rules.max_per_category or rules.boost_items or rules.boost_categories)


def rerank(
    ranked: list[tuple[str, float]], rules: RulesConfig, category_of: dict[str, str], k: int
) -> tuple[list[tuple[str, float]], list[str]]:
    """Boosted scores (bounded by max_boost), then at most max_per_category per category, cut to k."""
    applied = []
    lo, hi = 1.0 / rules.max_boost, rules.max_boost
    if rules.boost_items or rules.boost_categories:
        boosted = []
        for item, score in ranked:
            factor = rules.boost_items.get(item, 1.0) * rules.boost_categories.get(category_of.get(item, ""), 1.0)
            factor = min(max(factor, lo), hi)
            boosted.append((item, score * factor if score >= 0 else score / factor))
            if factor != 1.0 and "boost" not in applied:
                applied.append("boost")
        ranked = sorted(boosted, key=lambda p: -p[1])
    if rules.max_per_category:
        counts: dict[str, int] = {}
        kept = []
        for item, score in ranked:
            c = category_of.get(item, "")
            if counts.get(c, 0) < rules.max_per_category:
                counts[c] = counts.get(c, 0) + 1
                kept.append((item, score))
        ranked = kept
        applied.append(f"max_per_category={rules.max_per_category}")
    return ranked[:k], applied
