"""The `patron` command-line tool: one sub-command group per area (data, features, train, serve...)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from patron.cli.data import data_app, features_app
from patron.cli.train import register_training_commands
from patron.cli.report import register_report_commands
from patron.cli.serve import register_serving_commands
from patron.cli.forget import forget
from patron.cli.keys import keys_app
from patron.cli.reliability import register_reliability_commands

# What a user can fix (a missing file, a bad value, no registered model): one line saying so instead of a traceback.
USER_ERRORS = (FileNotFoundError, NotADirectoryError, PermissionError, ValueError, LookupError, KeyError)


class PatronApp(typer.Typer):
    """The root command: user errors end in one `error: ...` line and exit code 2 ($PATRON_DEBUG=1: traceback)."""

    def __call__(self, *args, **kwargs):
        import os
        import sys

        from mlflow.exceptions import MlflowException

        try:
            return super().__call__(*args, **kwargs)
        except (*USER_ERRORS, MlflowException) as exc:
            if os.environ.get("PATRON_DEBUG") == "1":
                raise
            message = (exc.message if isinstance(exc, MlflowException)
                       else exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc))
            typer.echo(f"error: {message} ({type(exc).__name__}; PATRON_DEBUG=1 shows the traceback)", err=True)
            sys.exit(2)


app = PatronApp(help="Patron: recommendations, churn scores and retention offers from a retailer's own data.",
                no_args_is_help=True, pretty_exceptions_enable=False)


@app.callback()
def main(
    ctx: typer.Context,
    config: Optional[Path] = typer.Option(None, "--config", envvar="PATRON_CONFIG",
                                          help="YAML configuration (default: configs/default.yaml)."),
    progress: bool = typer.Option(True, "--progress/--no-progress",
                                  help="Progress bars on stderr (shown on a terminal only)."),
) -> None:
    """Patron's command-line tool."""
    import os

    from patron.progress import ENV

    if not progress:
        os.environ[ENV] = "0"
    ctx.obj = {"config": config}


app.add_typer(data_app, name="data", help="Obtain, synthesise and ingest data into the workspace.")
app.add_typer(features_app, name="features", help="Point-in-time features and labels.")
register_training_commands(app)
register_report_commands(app)
register_serving_commands(app)
register_reliability_commands()
app.command("forget")(forget)
app.add_typer(keys_app, name="keys", help="API keys with scopes (storefront, crm, admin) for the service.")


@app.command("monitor")
def monitor(ctx: typer.Context,
            out: Optional[Path] = typer.Option(None, "--out", help="Report folder (default: WORKSPACE/outputs/monitor).")
            ) -> None:
    """Drift of live features, churn scores and recommendation coverage against the champion's training data;
    exits 1 when a threshold of `monitor` in the config is crossed (so a scheduler can retrain)."""
    from patron.cli.context import settings_from
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
        typer.echo("over threshold: " + ", ".join(report.flagged) + "; retrain: patron train churn && patron "
                   "promote churn (see docs/retraining.md)", err=True)
        raise typer.Exit(1)


@app.command("demo")
def demo(ctx: typer.Context, port: Optional[int] = typer.Option(None, help="Port (default: config serving.port)."),
         serve: bool = typer.Option(True, help="Start the service after preparing.")) -> None:
    """The embedded demo: synthesise, ingest, build features, train, promote and serve (reuses what exists)."""
    from patron.cli.context import settings_from
    from patron.demo import curl_lines, demo_key, prepare
    from serving.server import serve_forever

    settings = settings_from(ctx)
    prepare(settings, echo=typer.echo)
    port = port or settings.serving.port
    if serve:
        typer.echo("\nTry:\n  " + "\n  ".join(curl_lines(settings, port, demo_key(settings))) + "\n")
        serve_forever(settings, port=port)
