"""Commands `patron data ...`: obtain, synthesise and ingest data into the workspace."""

from __future__ import annotations

from pathlib import Path

import typer

from patron.cli.context import settings_from

data_app = typer.Typer(name="data", no_args_is_help=True, help="Obtain, synthesise and ingest data into the workspace.")


@data_app.command("synth")
def synth(
    ctx: typer.Context,
    customers: int | None = typer.Option(None, help="Number of customers (default: config)."),
    items: int | None = typer.Option(None, help="Number of items (default: config)."),
    days: int | None = typer.Option(None, help="Days of history (default: config)."),
    seed: int | None = typer.Option(None, help="Random seed (default: config)."),
    out: Path | None = typer.Option(None, help="Output folder (default: WORKSPACE/raw/synthetic)."),
    play_campaign: str | None = typer.Option(
        None,
        "--play-campaign",
        help="Instead: play this campaign forward on the workspace's synthetic retailer (its outcome window of "
        "purchases and redemptions, the true offer effects applied to treated customers only).",
    ),
) -> None:
    """Simulate a retailer: every contract table plus its ground truth (or play a campaign forward on it)."""
    settings = settings_from(ctx)
    if play_campaign is not None:
        from features.synthetic.campaign_play import play_campaign as play

        typer.echo(play(settings, play_campaign, seed).summary(play_campaign))
        return
    from features.synthetic.generate import generate

    report = generate(settings, customers=customers, items=items, days=days, seed=seed, out=out)
    typer.echo(report.summary())


@data_app.command("get")
def get(ctx: typer.Context, dataset: str = typer.Argument(..., help="cdnow or ml100k")) -> None:
    """Obtain a public dataset (checksum verified) into WORKSPACE/raw."""
    from features.ingest.download import get_dataset

    path = get_dataset(dataset, settings_from(ctx), echo=typer.echo)
    typer.echo(str(path))


@data_app.command("ingest")
def ingest(
    ctx: typer.Context,
    source: str = typer.Option(..., help="synthetic, cdnow, ml100k, online-retail or csv"),
    path: Path | None = typer.Option(None, help="File or folder to read (default: the obtained dataset)."),
    mapping: Path | None = typer.Option(None, help="Column mapping YAML (for --source csv)."),
    max_quarantine_share: float | None = typer.Option(
        None, help="Fail when more than this share of a table is quarantined (default: config)."
    ),
) -> None:
    """Read a source, map it to the contract, validate it and write workspace tables (bad rows to quarantine)."""
    from features.ingest.pipeline import IngestError, ingest_source

    try:
        report = ingest_source(
            settings_from(ctx), source=source, path=path, mapping=mapping, max_quarantine_share=max_quarantine_share
        )
    except IngestError as exc:
        typer.echo(f"ingest failed: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(report.summary())
