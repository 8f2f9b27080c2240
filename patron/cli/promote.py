"""Command `patron promote`: move a model's champion alias to a version that beats the champion."""

from __future__ import annotations

from enum import Enum

import typer

from patron.cli.context import settings_from


class Promotable(str, Enum):
    recommender = "recommender"
    churn = "churn"
    clv = "clv"
    uplift = "uplift"


def promote(
    ctx: typer.Context,
    model: Promotable = typer.Argument(..., help="recommender, churn, clv or uplift"),
    version: int | None = typer.Option(None, "--version", help="Version to promote (default: latest)."),
    force: bool = typer.Option(False, "--force", help="Promote even if it does not beat the champion."),
) -> None:
    """Point the champion alias at a registered version if it beats the current champion on the same data."""
    from training.mlops.registry import PromotionRefused
    from training.mlops.registry import promote as promote_version

    try:
        result = promote_version(settings_from(ctx), model.value, version=version, force=force)
    except PromotionRefused as exc:
        typer.echo(f"promotion refused: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(result.message)
