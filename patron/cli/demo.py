"""Command `patron demo`: the embedded demo end to end, then the service."""

from __future__ import annotations

import typer

from patron.cli.context import settings_from


def demo(
    ctx: typer.Context,
    port: int | None = typer.Option(None, help="Port (default: config serving.port)."),
    serve: bool = typer.Option(True, help="Start the service after preparing."),
) -> None:
    """The embedded demo: synthesise, ingest, build features, train, promote and serve (reuses what exists)."""
    from patron.demo import curl_lines, demo_key, prepare
    from serving.server import serve_forever

    settings = settings_from(ctx)
    prepare(settings, echo=typer.echo)
    port = port or settings.serving.port
    if serve:
        typer.echo("\nTry:\n  " + "\n  ".join(curl_lines(settings, port, demo_key(settings))) + "\n")
        serve_forever(settings, port=port)
