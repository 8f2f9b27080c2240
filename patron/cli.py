"""The `patron` command-line tool: one sub-command group per area (data, features, train, serve...)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from features.cli import data_app, features_app
from training.cli import register_training_commands
from serving.cli import register_serving_commands

app = typer.Typer(help="Patron: recommendations, churn scores and retention offers from a retailer's own data.",
                  no_args_is_help=True, pretty_exceptions_enable=False)


@app.callback()
def main(
    ctx: typer.Context,
    config: Optional[Path] = typer.Option(None, "--config", envvar="PATRON_CONFIG",
                                          help="YAML configuration (default: configs/default.yaml)."),
) -> None:
    """Patron's command-line tool."""
    ctx.obj = {"config": config}


app.add_typer(data_app, name="data", help="Obtain, synthesise and ingest data into the workspace.")
app.add_typer(features_app, name="features", help="Point-in-time features and labels.")
register_training_commands(app)
register_serving_commands(app)


@app.command("demo")
def demo(ctx: typer.Context, port: Optional[int] = typer.Option(None, help="Port (default: config serving.port)."),
         serve: bool = typer.Option(True, help="Start the service after preparing.")) -> None:
    """The embedded demo: synthesise, ingest, build features, train, promote and serve (reuses what exists)."""
    from patron.context import settings_from
    from patron.demo import curl_lines, prepare
    from serving.server import serve_forever

    settings = settings_from(ctx)
    prepare(settings, echo=typer.echo)
    port = port or settings.serving.port
    if serve:
        typer.echo("\nTry:\n  " + "\n  ".join(curl_lines(settings, port)) + "\n")
        serve_forever(settings, port=port)
