"""Commands `patron serve` and `patron score ...`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from patron.context import settings_from

score_app = typer.Typer(no_args_is_help=True)
events_app = typer.Typer(no_args_is_help=True)


@events_app.command("sync")
def sync_events_command(ctx: typer.Context) -> None:
    """Merge the events posted to the service (online store) into the workspace events table, each once."""
    from features.ingest import IngestError
    from serving.event_sync import sync_online_events

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


def serve(
    ctx: typer.Context,
    port: Optional[int] = typer.Option(None, "--port", help="HTTP port (default: serving.port of the config)."),
) -> None:
    """Serve recommendations and churn scores over HTTP (BentoML) from the registry champions."""
    from serving.server import serve_forever

    settings = settings_from(ctx)
    config = (ctx.find_root().obj or {}).get("config")
    port = port or settings.serving.port
    typer.echo(f"Serving on http://{settings.serving.host}:{port} (workspace {settings.workspace})")
    raise typer.Exit(serve_forever(settings, port=port, config=config))


@score_app.command("churn")
def score_churn_command(
    ctx: typer.Context,
    out: Optional[Path] = typer.Option(None, "--out", help="CSV or Parquet file (default: "
                                       "<workspace>/outputs/churn_scores.parquet)."),
    min_tier: Optional[str] = typer.Option(None, "--min-tier", help="Keep only this risk tier and riskier ones."),
) -> None:
    """Churn score, risk tier and reasons of every active customer, riskiest first."""
    from serving.batch_scoring import score_churn

    settings = settings_from(ctx)
    try:
        report = score_churn(settings, out=out, min_tier=min_tier)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    typer.echo(report.summary())


def serve_bench_command(
    ctx: typer.Context,
    rates: str = typer.Option("50,100,200,400", "--rates", help="Offered request rates per second, comma-separated."),
    seconds: float = typer.Option(10.0, "--seconds", help="Seconds of load per rate and endpoint."),
    workers: int = typer.Option(2, "--workers", help="Serving workers (production: one per core)."),
    port: int = typer.Option(3917, "--port", help="Port for the servers under test."),
) -> None:
    """Open-loop load at fixed rates on /recommend, /churn and POST /events, beside a constant BentoML endpoint."""
    from serving.bench import TARGET_P99_MS, run_serve_bench

    settings = settings_from(ctx)
    config = (ctx.find_root().obj or {}).get("config")
    typer.echo("| endpoint | offered/s | achieved/s | p50 ms | p95 ms | p99 ms | errors |\n"
               "|---|---|---|---|---|---|---|")
    report = run_serve_bench(settings, config, [float(r) for r in rates.split(",")], seconds, workers,
                             echo=typer.echo, port=port)
    for name, rate in report["highest_rate_held"].items():
        typer.echo(f"{name}: highest rate held with p99 <= {TARGET_P99_MS[name]:.0f} ms and no error: {rate:.0f}/s")
    typer.echo(f"resident memory (MB, largest first): Patron {report['rss_mb_patron']}, floor {report['rss_mb_floor']}")


def register_serving_commands(app: typer.Typer) -> None:
    """Add the serving commands to the root command."""
    app.command("serve")(serve)
    app.add_typer(score_app, name="score", help="Batch scores written to files.")
    app.add_typer(events_app, name="events", help="Live events recorded by the service.")
    from training.cli import bench_app

    bench_app.command("serve")(serve_bench_command)
