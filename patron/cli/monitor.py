"""Command `patron monitor`: drift of live data and scores against the champion's training data."""

from __future__ import annotations

from pathlib import Path

import typer

from patron.cli.context import settings_from


def monitor(
    ctx: typer.Context,
    out: Path | None = typer.Option(None, "--out", help="Report folder (default: WORKSPACE/outputs/monitor)."),
) -> None:
    """Drift of live features, churn scores and recommendation coverage against the champion's training data;
    exits 1 when a threshold of `monitor` in the config is crossed (so a scheduler can retrain)."""
    from patron.progress import bar
    from serving.online.drift import unmerged_purchase_prices
    from training.mlops.monitor import run_monitor

    settings = settings_from(ctx)
    with bar(total=5, desc="monitor") as steps:

        def step(name: str) -> None:
            steps.set_postfix_str(name)
            steps.update(1)

        report = run_monitor(settings, out, unmerged_purchase_prices(settings), progress=step)
    typer.echo(report.summary())
    if report.flagged:
        typer.echo(
            "over threshold: " + ", ".join(report.flagged) + "; retrain: patron train churn && patron "
            "promote churn (see docs/retraining.md)",
            err=True,
        )
        raise typer.Exit(1)
