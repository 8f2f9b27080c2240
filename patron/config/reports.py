"""Settings of `patron report` (self-contained HTML reports) and `patron compare` (champion vs latest candidate)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from patron.config.section import Section


class ReportsConfig(Section):
    """Report contents and the bootstrap of a comparison (resampled with Settings.seed)."""

    out_dir: Path | None = None  # None: WORKSPACE/reports (one HTML file per report, also in MLflow)
    n_boot: int = Field(1000, ge=10)  # bootstrap resamples (customers) of the compared metric's difference
    ci_level: float = Field(0.95, gt=0.5, lt=1.0)  # confidence level of that difference's percentile interval
    budget_points: int = Field(12, ge=2)  # budgets on the retention profit curve (0 to funding every offer)
    example_customers: int = Field(5, gt=0)  # recommender report: customers shown with their history
    history_items: int = Field(8, gt=0)  # their latest purchases shown beside the recommendations
    lift_bins: int = Field(10, ge=2)  # churn report: quantile bins of the lift chart
