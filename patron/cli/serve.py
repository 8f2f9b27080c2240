"""Command `patron serve`: the HTTP service in the foreground."""

from __future__ import annotations

import typer

from patron.cli.context import config_path, settings_from


def serve(
    ctx: typer.Context,
    port: int | None = typer.Option(None, "--port", help="HTTP port (default: serving.port of the config)."),
) -> None:
    """Serve recommendations and churn scores over HTTP (BentoML) from the registry champions."""
    from serving.server import serve_forever

    settings = settings_from(ctx)
    port = port or settings.serving.port
    typer.echo(f"Serving on http://{settings.serving.host}:{port} (workspace {settings.workspace})")
    raise typer.Exit(serve_forever(settings, port=port, config=config_path(ctx)))
