"""The `patron` command-line tool: the root command, composed of one module per command or command group."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import typer

from patron.cli.bench import bench_app
from patron.cli.campaign import campaign_app
from patron.cli.data import data_app
from patron.cli.demo import demo
from patron.cli.events import events_app
from patron.cli.features import features_app
from patron.cli.forget import forget
from patron.cli.keys import keys_app
from patron.cli.monitor import monitor
from patron.cli.promote import promote
from patron.cli.recommend import recommend_app
from patron.cli.report import compare, report
from patron.cli.retention import retention_app
from patron.cli.score import score_app
from patron.cli.serve import serve
from patron.cli.train import train
from patron.cli.tune import tune_app
from patron.progress import ENV

# What a user can fix (a missing file, a bad value, no registered model): one line saying so instead of a traceback.
USER_ERRORS = (FileNotFoundError, NotADirectoryError, PermissionError, ValueError, LookupError, KeyError)


class PatronApp(typer.Typer):
    """The root command: user errors end in one `error: ...` line and exit code 2 ($PATRON_DEBUG=1: traceback)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            return super().__call__(*args, **kwargs)
        except (*USER_ERRORS, MlflowException) as exc:
            if os.environ.get("PATRON_DEBUG") == "1":
                raise
            message = (
                exc.message
                if isinstance(exc, MlflowException)
                else exc.args[0]
                if isinstance(exc, KeyError) and exc.args
                else str(exc)
            )
            typer.echo(f"error: {message} ({type(exc).__name__}; PATRON_DEBUG=1 shows the traceback)", err=True)
            sys.exit(2)


app = PatronApp(
    help="Patron: recommendations, churn scores and retention offers from a retailer's own data.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def main(
    ctx: typer.Context,
    config: Path | None = typer.Option(
        None, "--config", envvar="PATRON_CONFIG", help="YAML configuration (default: configs/default.yaml)."
    ),
    progress: bool = typer.Option(
        True, "--progress/--no-progress", help="Progress bars on stderr (shown on a terminal only)."
    ),
) -> None:
    """Patron's command-line tool."""
    if not progress:
        os.environ[ENV] = "0"
    ctx.obj = {"config": config}


# `patron --help` lists the commands in this order, then the groups.
for name, command in (
    ("train", train),
    ("promote", promote),
    ("report", report),
    ("compare", compare),
    ("serve", serve),
    ("forget", forget),
    ("monitor", monitor),
    ("demo", demo),
):
    app.command(name)(command)
for group in (
    data_app,
    features_app,
    bench_app,
    tune_app,
    score_app,
    events_app,
    retention_app,
    campaign_app,
    recommend_app,
    keys_app,
):
    app.add_typer(group)
