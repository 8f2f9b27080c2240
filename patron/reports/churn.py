"""`patron report churn`: ROC, PR, calibration, gain and lift, reason-code summary and metrics by segment."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from features.pit import build
from features.pit.feature_text import FEATURE_GROUPS
from features.pit.segments import customer_segments
from features.tables.store import fingerprint
from patron.config import Settings
from patron.reports.html import HtmlReport, save_report
from patron.reports.runs import ModelRun, champion_run
from training.churn.model import ChurnModel
from training.mlops import plots, tracking
from training.mlops.metrics import churn_metrics

CHURN_FIGURES = {
    "roc": "ROC curve",
    "precision-recall": "Precision-recall curve",
    "calibration": "Calibration",
    "gain": "Cumulative gain",
    "lift": "Lift by score decile",
    "reason-codes": "Reason-code summary",
}


@dataclass
class ChurnEvaluation:
    """A churn version's ChurnModel scored on the test cutoff rebuilt from the workspace."""

    run: ModelRun
    model: ChurnModel
    frame: pd.DataFrame  # the test-cutoff training set: customer_id, cutoff, features, churned
    raw: np.ndarray  # booster probabilities
    calibrated: np.ndarray  # through the version's calibrator (raw when it has none)
    same_data: bool  # whether the rebuilt set has the fingerprint the run was evaluated on

    @property
    def y(self) -> np.ndarray:
        """The churn labels."""
        return self.frame["churned"].to_numpy(int)


def evaluate_churn_run(settings: Settings, run: ModelRun) -> ChurnEvaluation:
    """Load the version's ChurnModel and score the workspace's test cutoff with it."""
    model = ChurnModel.from_uri(f"models:/{run.name}/{run.version}", settings)
    frame = build.training_set(settings, [build.cutoff_plan(settings).test])
    tag = tracking.configure(settings).get_run(run.run_id).data.tags.get(tracking.FINGERPRINT_TAG)
    return ChurnEvaluation(
        run, model, frame, model.raw_proba(frame), model.predict_proba(frame), same_data=tag == fingerprint(frame)
    )


def lift_figure(y: np.ndarray, p: np.ndarray, bins: int) -> Figure:
    """Churn rate per score quantile bin (riskiest first) over the overall churn rate."""
    decile = pd.qcut(pd.Series(-p).rank(method="first"), bins, labels=False) + 1
    lift = pd.Series(y).groupby(decile.to_numpy()).mean() / np.mean(y)
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    ax.bar(lift.index, lift.to_numpy(), label="model")
    ax.axhline(1.0, linestyle="--", color="grey", label="random targeting")
    ax.set(
        xlabel=f"score bin (1 = riskiest {100 // bins}%)",
        ylabel="lift (churn rate / overall rate)",
        title="Lift by score bin (test cutoff)",
    )
    ax.legend()
    fig.tight_layout()
    return fig


def reason_summary(model: ChurnModel, X: pd.DataFrame) -> pd.DataFrame:
    """Per feature group (FEATURE_GROUPS): mean |contribution| and mean contribution to the log-odds, largest first."""
    names = model.feature_name()
    contrib = pd.DataFrame(model.predict(model.inputs(X), pred_contrib=True)[:, : len(names)], columns=names)
    grouped = contrib.T.groupby([FEATURE_GROUPS.get(n, n) for n in names]).sum().T  # a reason sums its group
    out = pd.DataFrame(
        {
            "group": grouped.columns,
            "mean_abs_contribution": grouped.abs().mean().to_numpy(),
            "mean_contribution": grouped.mean().to_numpy(),
            "features": [", ".join(n for n in names if FEATURE_GROUPS.get(n, n) == g) for g in grouped.columns],
        }
    )
    return out.sort_values("mean_abs_contribution", ascending=False, ignore_index=True)


def reason_figure(summary: pd.DataFrame, top: int = 15) -> Figure:
    """Horizontal bars of the groups' mean |contribution|."""
    shown = summary.head(top).iloc[::-1]
    fig = Figure(figsize=(7, 5))
    ax = fig.subplots()
    ax.barh(shown["group"], shown["mean_abs_contribution"])
    ax.set(xlabel="mean |contribution| to the log-odds", title="Reason codes: global contribution by group")
    fig.tight_layout()
    return fig


def metrics_by_segment(frame: pd.DataFrame, p: np.ndarray, settings: Settings) -> pd.DataFrame:
    """Customers, churn rate, mean score, ROC-AUC, PR-AUC and Brier per lifecycle stage and RFM recency score."""
    seg = customer_segments(frame, None, settings.segments)
    data = pd.DataFrame(
        {
            "y": frame["churned"].to_numpy(int),
            "p": p,
            "lifecycle_stage": seg["lifecycle_stage"].to_numpy(),
            "rfm_recency": seg["rfm_recency"].astype(str).to_numpy(),
        }
    )
    rows = []
    for column in ("lifecycle_stage", "rfm_recency"):
        for value, g in data.groupby(column):
            both = g["y"].nunique() == 2
            rows.append(
                {
                    "segment": f"{column}={value}",
                    "customers": len(g),
                    "churn_rate": g["y"].mean(),
                    "mean_score": g["p"].mean(),
                    "roc_auc": roc_auc_score(g["y"], g["p"]) if both else np.nan,
                    "pr_auc": average_precision_score(g["y"], g["p"]) if both else np.nan,
                    "brier": brier_score_loss(g["y"], g["p"]),
                }
            )
    return pd.DataFrame(rows)


def churn_report(settings: Settings, run_id: str | None = None, out: Path | None = None) -> Path:
    """Write the churn report of a run (default: the champion's) and log it to that run; returns the file."""
    ev = evaluate_churn_run(settings, champion_run(settings, "churn", run_id))
    y, p = ev.y, ev.calibrated
    report = HtmlReport(
        "Churn model report",
        {
            "model": f"{ev.run.name} v{ev.run.version}",
            "run": ev.run.run_id,
            "test customers": str(len(y)),
            "churn rate": f"{y.mean():.3f}",
        },
    )
    if not ev.same_data:
        report.paragraph(
            "Note: the workspace's test cutoff no longer matches the data this run was evaluated on; "
            "the figures below are on the current data."
        )
    report.heading("Metrics on the test cutoff", "metrics")
    metrics = {"calibrated": churn_metrics(y, p), "booster (uncalibrated)": churn_metrics(y, ev.raw)}
    report.table(pd.DataFrame([{"scores": k, **v} for k, v in metrics.items()]), "metrics-table")
    report.heading("Discrimination and calibration", "curves")
    for ident, fig in {
        "roc": plots.roc_figure(y, p),
        "precision-recall": plots.pr_figure(y, p),
        "calibration": plots.calibration_figure(y, p),
        "gain": plots.gain_figure(y, p),
        "lift": lift_figure(y, p, settings.reports.lift_bins),
    }.items():
        report.figure(fig, ident, CHURN_FIGURES[ident])
    report.heading("Reason codes", "reasons")
    summary = reason_summary(ev.model, ev.frame)
    report.figure(
        reason_figure(summary),
        "reason-codes",
        CHURN_FIGURES["reason-codes"],
        "Mean absolute LightGBM contribution per reason group (a reason sums its group's features)",
    )
    report.table(summary, "reason-table")
    report.heading("Metrics by segment", "segments")
    report.table(metrics_by_segment(ev.frame, p, settings), "segment-table")
    return save_report(settings, report, "churn", ev.run.run_id, out)
