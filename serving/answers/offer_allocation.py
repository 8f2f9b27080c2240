"""Choosing offers: a multiple-choice knapsack over (customer, offer) pairs with their expected net values.

First the convex-hull greedy for the multiple-choice knapsack, which also gives the LP relaxation's optimum, an upper
bound on every plan. When the greedy is within `retention.solver_mip_rel_gap` of that bound it is kept (optimal
within the gap: the usual case, as the gap is at most one customer's value); otherwise, up to
`retention.solver_max_pairs` candidates, HiGHS (scipy milp) solves it exactly. Measured on random instances: 15k
candidates greedy 0.4 s with a 5e-6 relative gap, while HiGHS took over 30 s; 6k candidates HiGHS 4.2 s.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import csr_array, vstack

from patron.config import RetentionConfig

CANDIDATE_COLUMNS = ["customer_id", "offer_type", "cost", "expected_net_value"]


@dataclass(frozen=True)
class Allocation:
    """The chosen (customer, offer) pairs and how they were found."""

    chosen: pd.DataFrame  # CANDIDATE_COLUMNS, highest expected net value first
    method: str  # "milp" or "greedy"
    optimal: bool  # proven optimal (within the configured relative gap)
    upper_bound: float  # no plan within the constraints is worth more than this

    @property
    def spend(self) -> float:
        """Total cost of the chosen offers."""
        return float(self.chosen["cost"].sum())

    @property
    def value(self) -> float:
        """Total expected net value of the chosen offers."""
        return float(self.chosen["expected_net_value"].sum())


def candidate_pairs(clv: pd.Series, effects: pd.DataFrame, offers: dict[str, float]) -> pd.DataFrame:
    """Every (customer, offer) with its cost and expected net value CLV x tau - cost (clv and effects by customer)."""
    unknown = sorted(set(offers) - set(effects.columns))
    if unknown:
        raise ValueError(f"offers: unknown offer type(s) {unknown}; the uplift model knows {sorted(effects.columns)}")
    ids = clv.index.intersection(effects.index)
    value = clv.reindex(ids).to_numpy(float)
    parts = [
        pd.DataFrame(
            {
                "customer_id": ids.astype(str),
                "offer_type": name,
                "cost": float(cost),
                "expected_net_value": value * effects.loc[ids, name].to_numpy(float) - float(cost),
            }
        )
        for name, cost in offers.items()
    ]
    if not parts:
        return pd.DataFrame(columns=CANDIDATE_COLUMNS)
    return pd.concat(parts, ignore_index=True)


def _worth_considering(pairs: pd.DataFrame, budget: float) -> pd.DataFrame:
    # Only positive-value pairs that fit the budget alone can be in an optimal plan.
    keep = (pairs["expected_net_value"] > 0) & (pairs["cost"] <= budget) & np.isfinite(pairs["expected_net_value"])
    return pairs[keep].reset_index(drop=True)


def _milp(pairs: pd.DataFrame, budget: float, max_customers: int | None, cfg: RetentionConfig) -> Allocation | None:
    customers = pd.Categorical(pairs["customer_id"])
    n, m = len(pairs), len(customers.categories)
    one_each = csr_array((np.ones(n), (customers.codes, np.arange(n))), shape=(m, n))
    rows = [one_each, csr_array(pairs["cost"].to_numpy(float)[None, :])]
    upper = [np.ones(m), np.array([budget])]
    if max_customers is not None:
        rows.append(csr_array(np.ones((1, n))))
        upper.append(np.array([float(max_customers)]))
    constraint = LinearConstraint(vstack(rows), -np.inf, np.concatenate(upper))
    value = pairs["expected_net_value"].to_numpy(float)
    res = milp(
        -value,
        constraints=constraint,
        integrality=np.ones(n),
        bounds=Bounds(0, 1),
        options={"time_limit": cfg.solver_time_limit_s, "mip_rel_gap": cfg.solver_mip_rel_gap},
    )
    if res.x is None:
        return None
    chosen = pairs[res.x > 0.5]
    bound = getattr(res, "mip_dual_bound", None)
    return Allocation(
        chosen,
        "milp",
        res.status == 0,
        float(-bound) if bound is not None and np.isfinite(bound) else float(value.clip(0).sum()),
    )


def _hull_steps(pairs: pd.DataFrame) -> pd.DataFrame:
    """Per customer, the LP-efficient upgrade steps (upper convex hull of cost vs value from (0, 0))."""
    steps = []
    for cid, group in pairs.sort_values(
        ["customer_id", "cost", "expected_net_value"], ascending=[True, True, False]
    ).groupby("customer_id", sort=False):
        hull: list[tuple[float, float, int]] = [(0.0, 0.0, -1)]
        for idx, cost, val in zip(group.index, group["cost"].to_numpy(), group["expected_net_value"].to_numpy()):
            if val <= hull[-1][1]:
                continue  # dominated: costs at least as much and is worth no more
            while len(hull) >= 2:
                (c0, v0, _), (c1, v1, _) = hull[-2], hull[-1]
                if (v1 - v0) * (cost - c0) <= (val - v0) * (c1 - c0):
                    hull.pop()  # the middle point lies under the segment: never LP-efficient
                else:
                    break
            hull.append((float(cost), float(val), int(idx)))
        for rank, ((c0, v0, _), (c1, v1, i1)) in enumerate(zip(hull, hull[1:])):
            steps.append((cid, rank, i1, c1 - c0, v1 - v0))
    out = pd.DataFrame(steps, columns=["customer_id", "rank", "pair", "d_cost", "d_value"])
    out["efficiency"] = out["d_value"] / out["d_cost"].where(out["d_cost"] > 0, np.finfo(float).tiny)
    return out.sort_values(["efficiency", "customer_id", "rank"], ascending=[False, True, True], ignore_index=True)


def greedy_allocation(pairs: pd.DataFrame, budget: float, max_customers: int | None = None) -> Allocation:
    """Convex-hull greedy for the multiple-choice knapsack; upper_bound is the LP relaxation's optimum."""
    pairs = _worth_considering(pairs, budget)
    steps = _hull_steps(pairs)
    left, held, frozen = budget, {}, set()
    bound, bound_left = 0.0, budget
    for cid, rank, pair, d_cost, d_value in steps[["customer_id", "rank", "pair", "d_cost", "d_value"]].itertuples(
        index=False
    ):
        if bound_left > 0:  # the LP optimum takes steps in this order, the last one fractionally
            bound += d_value * min(1.0, bound_left / d_cost) if d_cost > 0 else d_value
            bound_left -= d_cost
        if cid in frozen or (rank > 0 and cid not in held) or d_cost > left:
            frozen.add(cid)  # a customer's later steps only make sense after its earlier ones
            continue
        if rank == 0 and max_customers is not None and len(held) >= max_customers:
            frozen.add(cid)
            continue
        held[cid] = pair
        left -= d_cost
    chosen = pairs.loc[list(held.values())] if held else pairs.iloc[:0]
    return Allocation(chosen, "greedy", False, float(bound))


def allocate(pairs: pd.DataFrame, budget: float, max_customers: int | None, cfg: RetentionConfig) -> Allocation:
    """At most one offer per customer, total cost within budget (and at most max_customers), max total value."""
    if budget < 0:
        raise ValueError(f"budget: must be at least 0, got {budget}")
    if max_customers is not None and max_customers < 0:
        raise ValueError(f"max_customers: must be at least 0, got {max_customers}")
    candidates = _worth_considering(pairs, budget)
    result = greedy_allocation(candidates, budget, max_customers)
    gap = result.upper_bound - result.value
    if gap <= cfg.solver_mip_rel_gap * abs(result.upper_bound):
        result = Allocation(result.chosen, result.method, True, result.upper_bound)
    elif len(candidates) <= cfg.solver_max_pairs and max_customers != 0:
        exact = _milp(candidates, budget, max_customers, cfg)
        if exact is not None and exact.value >= result.value:  # a time-limited MILP may find less
            result = Allocation(exact.chosen, exact.method, exact.optimal, min(exact.upper_bound, result.upper_bound))
    chosen = result.chosen[CANDIDATE_COLUMNS].sort_values(
        ["expected_net_value", "customer_id"], ascending=[False, True], ignore_index=True
    )
    return Allocation(chosen, result.method, result.optimal, result.upper_bound)
