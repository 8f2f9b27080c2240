"""Commands `patron features ...`: point-in-time features and labels."""

from __future__ import annotations

from datetime import date

import typer

from patron.cli.context import settings_from

features_app = typer.Typer(name="features", no_args_is_help=True, help="Point-in-time features and labels.")


@features_app.command("build")
def build(
    ctx: typer.Context,
    cutoff: str | None = typer.Option(None, help="Cutoff date YYYY-MM-DD (default: the end of the data)."),
    horizon: int | None = typer.Option(None, help="Label horizon in days (default: config)."),
) -> None:
    """Customer features from records before the cutoff, churn labels from [cutoff, cutoff + horizon)."""
    from features.pit.build import build_features

    report = build_features(
        settings_from(ctx), cutoff=date.fromisoformat(cutoff) if cutoff else None, horizon_days=horizon
    )
    typer.echo(report.summary())
