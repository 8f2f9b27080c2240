"""Recommendations and similar items from the champion recommender, the live online state and the rules."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from features.pit.repurchase import RepurchaseCycles
from patron.config import RulesConfig, Settings
from serving.answers import rules as business
from serving.online.state import OnlineState
from training.recommend.base import Reason, Recommender

OVERFETCH = 4  # candidates per answer slot when rules may drop or reorder items
RRF_K = 60  # reciprocal-rank-fusion constant (Cormack et al.): blends rankings whose scores are not comparable
RESTOCK_REASON = "time to restock"


@dataclass
class Answer:
    """Ranked items with reasons, whether they fell back to popularity, and the rules that shaped them."""

    items: list[dict[str, Any]]
    fallback: bool
    rules_applied: list[str]
    source: str  # personal | live_history | popular


def _personal_reason(item_id: str, bought: list[str], state: OnlineState) -> str:
    category = state.category_of.get(item_id)
    # Latest purchase in the same category, else the latest purchase at all.
    same = next((b for b in bought if state.category_of.get(b) == category), None) or (bought[0] if bought else None)
    return f"similar to {state.name_of.get(same, same)} you bought" if same else "picked for you"


def _source_reason(item_id: str, why: Reason, bought: list[str], state: OnlineState) -> str:
    """A personal answer's reason from the kind the recommender gave and the bought item behind it, if it named one."""
    kind, anchor = why
    if kind == "restock":
        return RESTOCK_REASON
    if kind == "popular":
        return f"popular in {state.category_of.get(item_id, 'the shop')}"
    if kind == "bought_with" and anchor:
        return f"often bought with {state.name_of.get(anchor, anchor)}"
    if anchor:
        return f"similar to {state.name_of.get(anchor, anchor)} you bought"
    return _personal_reason(item_id, bought, state)


def _history_weights(events: list[dict[str, Any]], event_weights: dict[str, float]) -> tuple[list[str], list[float]]:
    return [e["item_id"] for e in events], [event_weights.get(e["type"], 0.0) for e in events]


def _blend(
    base: list[tuple[str, float]], extra: dict[str, tuple[int, str]], weight: float
) -> tuple[list[tuple[str, float]], dict[str, str]]:
    """Reciprocal-rank fusion of the base ranking with a second one given as item -> (rank, reason)."""
    fused: dict[str, float] = {}
    for rank, (item, _) in enumerate(base):
        fused[item] = (1 - weight) / (RRF_K + rank)
    for item, (rank, _) in extra.items():
        fused[item] = fused.get(item, 0.0) + weight / (RRF_K + rank)
    ranked = sorted(fused.items(), key=lambda p: -p[1])
    return ranked, {i: reason for i, (_, reason) in extra.items()}


def due_consumables(
    cycles: RepurchaseCycles | None,
    customer_id: str,
    live: list[dict[str, Any]],
    pool: Collection[str],
    skip: Collection[str] = (),
) -> list[str]:
    """The customer's items due for a restock among `pool` and not in `skip`, most overdue first, at most
    `max_items`."""
    if cycles is None or not cycles.config.enabled or not cycles.config.max_items:
        return []
    return [i for i, _ in cycles.due(customer_id, live) if i in pool and i not in skip][: cycles.config.max_items]


def recommend(
    recommender: Recommender,
    state: OnlineState,
    customer_id: str,
    k: int,
    exclude_purchased: bool,
    categories: list[str] | None,
    context_item_ids: list[str] | None,
    rules: RulesConfig,
    settings: Settings,
    cycles: RepurchaseCycles | None = None,
) -> Answer:
    """Up to k items: trained factors, else live history folded in, else popularity; then restocks, context, rules."""
    bought = state.purchased_items(customer_id)
    applied = ["exclude_purchased"] if exclude_purchased else []
    context = [i for i in (context_item_ids or []) if recommender.knows_item(i)]
    allowed, narrowed = business.candidates(rules, state, categories)
    applied += narrowed
    consent = state.personalization_allowed(customer_id)
    known = recommender.knows_customer(customer_id)
    restocks = cycles is not None and cycles.config.enabled
    live = consent and (restocks or not known)  # one store read, only when something uses it
    events = state.live_events(customer_id, settings.online.history_events) if live else []
    # Consumables due again are exempt from "exclude purchased"; the others bought stay hidden.
    restock = due_consumables(cycles, customer_id, events, allowed, set(context)) if consent else []
    exclude = (set(bought) - set(restock) if exclude_purchased else set()) | set(context)
    n = k * OVERFETCH if business.needs_overfetch(rules) or context or restock else k
    ranked, source = [], "popular"
    why: dict[str, Reason] = {}  # personal answers: item -> (reason kind, bought item behind it or None)
    if consent and known:
        explained = recommender.recommend_explained(customer_id, n, exclude=exclude, allowed=allowed)
        ranked, source = [(item, score) for item, score, _ in explained], "personal"
        why = {item: reason for item, _, reason in explained}
    elif consent and events:
        items, weights = _history_weights(events, settings.features.interactions.event_weights)
        ranked = recommender.recommend_from_history(
            items,
            weights,
            n,
            exclude=exclude,
            allowed=allowed,
            regularization=settings.recommender.regularization,
            alpha=settings.recommender.alpha,
        )
        source = "live_history" if ranked else source
    if not consent:
        applied.append("no_personalisation_consent")
    if source == "popular":
        ranked = recommender.popular(n, exclude=exclude, allowed=allowed)
    reasons: dict[str, str] = {}
    if context:
        weight = settings.online.context_weight
        near: dict[str, tuple[int, str]] = {}
        for ctx in context:
            reason = f"goes with {state.name_of.get(ctx, ctx)}"
            for rank, (item, _) in enumerate(recommender.similar_items(ctx, n, allowed=allowed, exclude=exclude)):
                if item not in near or rank < near[item][0]:
                    near[item] = (rank, reason)
        ranked, reasons = _blend(ranked, near, weight)
        applied.append("context")
    if restock:
        due = {item: (rank, RESTOCK_REASON) for rank, item in enumerate(restock)}
        ranked, restock_reasons = _blend(ranked, due, cycles.config.weight)
        reasons.update(restock_reasons)
        applied.append("restock")
    ranked, reranked = business.rerank(ranked, rules, state.category_of, k)
    applied += reranked
    items = []
    for item, score in ranked:
        if item in reasons:
            reason = reasons[item]
        elif source == "popular":
            reason = f"popular in {state.category_of.get(item, 'the shop')}"
        elif source == "live_history":
            reason = "picked for you from what you just viewed and bought"
        elif item in why:
            reason = _source_reason(item, why[item], bought, state)
        else:
            reason = _personal_reason(item, bought, state)
        items.append({"item_id": item, "score": float(score), "reason": reason})
    return Answer(items, source == "popular", applied, source)


def similar_items(recommender: Recommender, state: OnlineState, item_id: str, k: int) -> list[dict[str, Any]]:
    """Up to k in-stock items similar to item_id (KeyError when the recommender does not know it)."""
    ranked = recommender.similar_items(item_id, k, allowed=state.allowed_items())
    name = state.name_of.get(item_id, item_id)
    return [{"item_id": i, "score": float(s), "reason": f"similar to {name}"} for i, s in ranked]
