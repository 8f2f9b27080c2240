"""Commands `patron events ...`: the live events the service recorded."""

from __future__ import annotations

import typer

from patron.cli.context import settings_from

events_app = typer.Typer(name="events", no_args_is_help=True, help="Live events recorded by the service.")


@events_app.command("sync")
def sync_events_command(ctx: typer.Context) -> None:
    """Merge the events, tickets and survey answers posted to the service into the workspace tables, each once."""
    from features.ingest.pipeline import IngestError
    from serving.online.event_sync import sync_online_events

    settings = settings_from(ctx)
    merged = 0
    try:
        while (report := sync_online_events(settings)) is not None:
            typer.echo(report.summary())
            merged += 1
    except IngestError as exc:
        raise typer.BadParameter(str(exc)) from exc
    if not merged:
        typer.echo("no new online events")
