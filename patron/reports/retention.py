"""`patron report retention`: the plan's profit curve vs budget, the offers' Qini curves and the loyalty programme."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from features.pit.build import customer_features, data_end
from patron.config import RetentionConfig, Settings
from patron.reports.html import HtmlReport, save_report
from patron.reports.loyalty import loyalty_by_month, loyalty_by_segment
from patron.reports.runs import champion_run
from serving.answers.offer_allocation import allocate, candidate_pairs
from serving.answers.retention_plan import churn_ranked_plan, load_customer_value
from serving.champions.load import load_churn_champion

RETENTION_FIGURES = {
    "profit-curve": "Expected net value of the retention plan vs budget",
    "qini-curve": "Qini curves of the uplift model (test customers)",
    "loyalty-over-time": "Loyalty programme over time",
}


def profit_curve(
    pairs: pd.DataFrame, churn: pd.Series, budgets: np.ndarray, cfg: RetentionConfig, progress: bool = False
) -> pd.DataFrame:
    """Per budget: the optimal plan's customers, spend and expected net value, and the churn-ranked plan's value."""
    rows = []
    for budget in tqdm(budgets, desc="profit curve", unit="budget", disable=not progress):
        plan = allocate(pairs, float(budget), None, cfg)
        naive = churn_ranked_plan(pairs, churn, float(budget))
        rows.append(
            {
                "budget": float(budget),
                "customers": len(plan.chosen),
                "spend": plan.spend,
                "expected_net_value": plan.value,
                "upper_bound": plan.upper_bound,
                "churn_ranked_value": float(naive["expected_net_value"].sum()),
            }
        )
    return pd.DataFrame(rows)


def plan_pairs(settings: Settings) -> tuple[pd.DataFrame, pd.Series]:
    """Every (consenting active customer, offer) pair with its expected net value, and those customers' P(churn)."""
    cutoff = data_end(settings)
    features = customer_features(settings, cutoff)
    value = load_customer_value(settings, features, cutoff)
    ids = features["customer_id"].astype(str)
    eligible = features[ids.isin(value.active - value.marketing_refused)]
    booster, _ = load_churn_champion(settings)
    churn = pd.Series(
        np.asarray(booster.predict(eligible[booster.feature_name()]), dtype=float),
        index=eligible["customer_id"].astype(str).to_numpy(),
    )
    pairs = candidate_pairs(value.clv.reindex(churn.index).dropna(), value.effects, settings.retention.offers)
    return pairs, churn


def budget_grid(pairs: pd.DataFrame, points: int) -> np.ndarray:
    """Budgets from 0 to what funds every customer's best worthwhile offer."""
    best = pairs[pairs["expected_net_value"] > 0].sort_values("expected_net_value", ascending=False)
    if best.empty:  # nothing is worth sending: show the (flat) curve up to the cheapest offer for everyone
        best = pairs.sort_values("cost")
    return np.linspace(0.0, float(best.drop_duplicates("customer_id")["cost"].sum()), points)


def qini_curves(settings: Settings, model: object, bins: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Qini curve per offer type (its rows and control rows) on the experiment's held-out test customers."""
    from training.value.uplift import feature_matrix
    from training.value.uplift_data import CONTROL, LABEL, TREATMENT, customer_split, experiment
    from training.value.uplift_eval import qini_curve

    frame = experiment(settings)
    test = frame[customer_split(frame["customer_id"], settings.uplift) == "test"]
    estimates = model.effects(feature_matrix(test))
    arm, retained = test[TREATMENT].to_numpy(), 1 - test[LABEL].to_numpy(int)
    curves = {}
    for offer in estimates.columns:
        keep = (arm == CONTROL) | (arm == offer)
        if (arm[keep] == offer).any() and (arm[keep] == CONTROL).any():
            curves[str(offer)] = qini_curve(estimates[offer].to_numpy()[keep], arm[keep] == offer, retained[keep], bins)
    return curves


def _profit_figure(curve: pd.DataFrame) -> Figure:
    fig = Figure(figsize=(6, 4.5))
    ax = fig.subplots()
    ax.plot(curve["budget"], curve["expected_net_value"], "o-", label="optimal plan (knapsack)")
    ax.plot(curve["budget"], curve["churn_ranked_value"], "s--", label="riskiest customers first")
    ax.set(xlabel="budget", ylabel="expected net value", title="Profit curve vs budget")
    ax.legend()
    fig.tight_layout()
    return fig


def _qini_figure(curves: dict[str, tuple[np.ndarray, np.ndarray]]) -> Figure:
    fig = Figure(figsize=(6, 4.5))
    ax = fig.subplots()
    for offer, (x, q) in curves.items():
        (line,) = ax.plot(x, q, label=offer)
        ax.plot([0, 1], [0, q[-1]], ":", color=line.get_color())
    ax.set(
        xlabel="share of customers targeted (highest estimated effect first)",
        ylabel="incremental customers retained per treated",
        title="Qini curves (dotted: random targeting)",
    )
    ax.legend()
    fig.tight_layout()
    return fig


def _loyalty_figure(monthly: pd.DataFrame) -> Figure:
    fig = Figure(figsize=(9, 4))
    left, right = fig.subplots(1, 2)
    for column in ("participation", "repurchase_rate", "points_redemption_rate"):
        left.plot(monthly["month"], monthly[column], label=column)
    left.set(title="Rates by month", ylim=(0, 1.05))
    left.legend(fontsize=8)
    right.plot(monthly["month"], monthly["basket_value"], label="basket value")
    right.plot(monthly["month"], monthly["purchase_frequency"], label="orders per buyer")
    right.set(title="Basket value and frequency by month")
    right.legend(fontsize=8)
    for ax in (left, right):
        ax.tick_params(axis="x", labelrotation=60, labelsize=7)
    fig.tight_layout()
    return fig


def retention_report(
    settings: Settings, run_id: str | None = None, out: Path | None = None, progress: bool = False
) -> Path:
    """Write the retention report for an uplift run (default: the champion's) and log it to that run."""
    import mlflow.pyfunc

    run = champion_run(settings, "uplift", run_id)
    pairs, churn = plan_pairs(settings)
    curve = profit_curve(pairs, churn, budget_grid(pairs, settings.reports.budget_points), settings.retention, progress)
    report = HtmlReport(
        "Retention report",
        {"uplift model": f"{run.name} v{run.version}", "run": run.run_id, "eligible customers": str(len(churn))},
    )
    report.heading("Profit curve vs budget", "profit")
    report.paragraph(
        "Expected net value = CLV x uplift - cost of the plan chosen at each budget (at most one offer "
        "per consenting active customer), against sending offers to the riskiest customers first."
    )
    if not (pairs["expected_net_value"] > 0).any():
        report.paragraph("No (customer, offer) pair has a positive expected net value: no budget buys any value.")
    report.figure(_profit_figure(curve), "profit-curve", RETENTION_FIGURES["profit-curve"])
    report.table(curve, "profit-table", "{:.2f}")
    report.heading("Uplift (Qini) curves", "qini")
    model = mlflow.pyfunc.load_model(f"models:/{run.name}/{run.version}").unwrap_python_model().model
    report.figure(
        _qini_figure(qini_curves(settings, model, settings.uplift.qini_bins)),
        "qini-curve",
        RETENTION_FIGURES["qini-curve"],
    )
    report.heading("Loyalty programme", "loyalty")
    report.paragraph(
        "Participation: customers with loyalty-ledger rows; repurchase: buyers ordering on two days or "
        "more (by month: buyers who had ordered before); redemption: points spent (redeemed or "
        "expired) over points earned; frequency: orders per buyer per 30 days (by month: per month)."
    )
    report.table(loyalty_by_segment(settings), "loyalty-segment-table")
    monthly = loyalty_by_month(settings)
    report.figure(_loyalty_figure(monthly), "loyalty-over-time", RETENTION_FIGURES["loyalty-over-time"])
    report.table(monthly, "loyalty-month-table")
    return save_report(settings, report, "retention", run.run_id, out)
