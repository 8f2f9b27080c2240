"""Commands `patron score ...`: batch scores written to files."""

from __future__ import annotations

from pathlib import Path

import typer

from patron.cli.context import settings_from
from patron.progress import enabled

score_app = typer.Typer(name="score", no_args_is_help=True, help="Batch scores written to files.")


@score_app.command("churn")
def score_churn_command(
    ctx: typer.Context,
    out: Path | None = typer.Option(
        None, "--out", help="CSV or Parquet file (default: <workspace>/outputs/churn_scores.parquet)."
    ),
    min_tier: str | None = typer.Option(None, "--min-tier", help="Keep only this risk tier and riskier ones."),
) -> None:
    """Churn score, risk tier and reasons of every active customer, riskiest first."""
    from serving.batch.churn import score_churn

    settings = settings_from(ctx)
    try:
        report = score_churn(settings, out=out, min_tier=min_tier, progress=enabled())
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    typer.echo(report.summary())
