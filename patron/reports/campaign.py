"""`patron campaign report ID`: a campaign's readout as an HTML report with plots, logged to its own MLflow run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from matplotlib.figure import Figure

from features.tables.campaigns import read_campaign
from patron.config import Settings
from patron.reports.html import HtmlReport, save_report
from training.mlops import tracking
from training.value.campaign_outcomes import campaign_readout

CAMPAIGN_FIGURES = {
    "offer-effects": "Incremental retention per offer type with its interval",
    "segment-effects": "Incremental retention per segment with its interval",
}


def effects_table(groups: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per group: arms, rates, the effect with its interval, net values and the verdict."""
    return pd.DataFrame(
        [
            {
                "group": g["group"],
                "treated": g["treatment"],
                "held out": g["holdout"],
                "retention treated %": None if g["retained"]["treatment"] is None else 100 * g["retained"]["treatment"],
                "retention held out %": None if g["retained"]["holdout"] is None else 100 * g["retained"]["holdout"],
                "effect pts": g["retained"]["effect"],
                "CI low": None if g["retained"]["ci"] is None else g["retained"]["ci"][0],
                "CI high": None if g["retained"]["ci"] is None else g["retained"]["ci"][1],
                "repurchase effect pts": g["repurchased"]["effect"],
                "revenue/customer effect": g["revenue"]["effect"],
                "redemption %": None if g["redemption_rate"] is None else 100 * g["redemption_rate"],
                "expected net": g["expected_net_value"],
                "realised net": g["realised_net_value"],
            }
            for g in groups
        ]
    )


def effects_figure(groups: list[dict[str, Any]], title: str) -> Figure:
    """Horizontal interval plot of incremental retention (points) per group."""
    shown = [g for g in groups if g["retained"]["ci"] is not None]
    fig = Figure(figsize=(7, 0.45 * len(shown) + 1.4))
    ax = fig.subplots()
    for y, g in enumerate(shown):
        low, high = g["retained"]["ci"]
        ax.plot([low, high], [y, y], color="#4a6fa5", linewidth=2)
        ax.plot(g["retained"]["effect"], y, "o", color="#1d3557")
    ax.axvline(0, color="#999", linewidth=1)
    ax.set_yticks(range(len(shown)), [g["group"] for g in shown], fontsize=8)
    ax.set_xlabel("incremental retention, percentage points")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def campaign_report(settings: Settings, cid: str, out: Path | None = None) -> tuple[Path, dict[str, Any]]:
    """Read the campaign out, write the HTML report and log it with the headline figures to an MLflow run."""
    campaign = read_campaign(settings.campaigns_dir, cid)
    result = campaign_readout(settings, campaign)
    meta = campaign.meta
    report = HtmlReport(
        f"Campaign {meta['id']}{' (provisional)' if result['provisional'] else ''}",
        meta={
            "sent": meta["sent_at"][:10],
            "window": f"{result['window']['start'][:10]} to {result['window']['end'][:10]}",
            "observed until": result["window"]["observed_until"][:10],
            "holdout": f"{meta['holdout_share']:.0%}",
            "seed": str(meta["seed"]),
        },
    )
    if result["provisional"]:
        report.paragraph("Provisional: the outcome window has not passed; outcomes so far.")
    report.heading("Verdicts", "verdicts")
    for g in result["overall"] + result["by_offer"] + result["by_segment"]:
        report.paragraph(g["verdict"])
    for key, ident, title in (
        ("by_offer", "offer-effects", "Per offer type"),
        ("by_segment", "segment-effects", "Per segment"),
    ):
        report.heading(title, ident)
        report.figure(effects_figure(result[key], CAMPAIGN_FIGURES[ident]), ident, CAMPAIGN_FIGURES[ident])
        report.table(effects_table(result[key]), f"{ident}-table", "{:,.2f}")
    report.heading("Per segment and offer", "segment-offer")
    report.table(effects_table(result["by_segment_offer"]), "segment-offer-table", "{:,.2f}")
    overall = result["overall"][0]
    tracking.configure(settings)
    with mlflow.start_run(run_name=f"campaign-{meta['id']}") as run:
        mlflow.set_tags({tracking.CODE_VERSION_TAG: tracking.code_version(), "patron.campaign": meta["id"]})
        mlflow.log_params({k: meta[k] for k in ("budget", "holdout_share", "seed", "outcome_days", "sent_at")})
        mlflow.log_metrics(
            {
                "treatment": overall["treatment"],
                "holdout": overall["holdout"],
                "retention_effect_pts": overall["retained"]["effect"] or 0.0,
                "expected_net_value": overall["expected_net_value"],
                "realised_net_value": overall["realised_net_value"] or 0.0,
                "provisional": float(result["provisional"]),
            }
        )
        mlflow.log_dict(result, "campaign_readout.json")
    path = save_report(settings, report, f"campaign-{meta['id']}", run.info.run_id, out)
    return path, result
