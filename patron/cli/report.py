"""Commands `patron report {churn,recommender,retention}` and `patron compare {churn,recommender}`."""

from __future__ import annotations

import time
from enum import Enum
from pathlib import Path

import typer

from patron.cli.context import settings_from


class Reportable(str, Enum):
    churn = "churn"
    recommender = "recommender"
    retention = "retention"


class Comparable(str, Enum):
    churn = "churn"
    recommender = "recommender"


def report(
    ctx: typer.Context,
    kind: Reportable = typer.Argument(..., help="churn, recommender or retention"),
    run: str | None = typer.Option(
        None,
        "--run",
        help="MLflow run id of the model version to report on (default: the champion's; retention: the uplift model's)",
    ),
    out: Path | None = typer.Option(None, "--out", help="HTML file to write (default: WORKSPACE/reports/<kind>.html)"),
) -> None:
    """A self-contained HTML report (inline plots, no external links), also logged to the MLflow run."""
    from patron.reports.churn import churn_report
    from patron.reports.recommender import recommender_report
    from patron.reports.retention import retention_report
    from patron.reports.runs import ReportError

    settings = settings_from(ctx)
    started = time.perf_counter()
    try:
        if kind is Reportable.retention:
            path = retention_report(settings, run, out, progress=True)
        else:
            path = {"churn": churn_report, "recommender": recommender_report}[kind.value](settings, run, out)
    except (ReportError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(
        f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB) in {time.perf_counter() - started:.1f}s; "
        f"logged to MLflow under reports/{path.name}"
    )


def compare(ctx: typer.Context, model: Comparable = typer.Argument(..., help="churn or recommender")) -> None:
    """Champion vs latest candidate on the same evaluation data: both metrics, the difference and its bootstrap
    interval (reports.n_boot resamples, the seed)."""
    from patron.reports.compare import compare as compare_versions
    from patron.reports.runs import ReportError

    try:
        result = compare_versions(settings_from(ctx), model.value, progress=True)
    except (ReportError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(result.summary())
