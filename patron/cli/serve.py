"""Commands `patron serve` and `patron score ...`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from patron.cli.context import settings_from
from patron.progress import enabled

score_app = typer.Typer(no_args_is_help=True)
events_app = typer.Typer(no_args_is_help=True)
retention_app = typer.Typer(no_args_is_help=True)
recommend_app = typer.Typer(no_args_is_help=True)


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
    from serving.batch.churn import score_churn

    settings = settings_from(ctx)
    try:
        report = score_churn(settings, out=out, min_tier=min_tier, progress=enabled())
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    typer.echo(report.summary())


@recommend_app.command("batch")
def recommend_batch_command(
    ctx: typer.Context,
    out: Path = typer.Option(..., "--out", help="CSV or Parquet file (by extension), written atomically."),
    k: Optional[int] = typer.Option(None, "--k", help="Items per customer (default: batch_recommend.k, 20)."),
    customers: Optional[Path] = typer.Option(None, "--customers", help="Only these customers: a file with a "
                                             "customer_id column, or one id per line."),
    segment: Optional[str] = typer.Option(None, "--segment", help="Only this lifecycle stage (new, active, "
                                          "at_risk, lapsed)."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Processes (default: one per core)."),
) -> None:
    """Recommendations for every customer (or a subset) for campaign tools, with rules, stock and consent."""
    from serving.batch.recommend import read_customer_ids, recommend_batch, segment_customer_ids

    settings = settings_from(ctx)
    try:
        ids = read_customer_ids(customers) if customers is not None else None
        if segment is not None:
            stage = set(segment_customer_ids(settings, segment))
            ids = sorted(stage) if ids is None else [c for c in ids if c in stage]
        report = recommend_batch(settings, out, k=k, customers=ids, workers=workers, progress=enabled())
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    typer.echo(report.summary())


@retention_app.command("plan")
def retention_plan_command(
    ctx: typer.Context,
    budget: float = typer.Option(..., "--budget", help="Total the offers may cost."),
    offers: Optional[Path] = typer.Option(None, "--offers", help="YAML/JSON {offer_type: cost} or CSV offer_type,cost "
                                          "(default: retention.offers of the config)."),
    out: Optional[Path] = typer.Option(None, "--out", help="CSV or Parquet file (default: "
                                       "<workspace>/outputs/retention_plan.parquet)."),
    max_customers: Optional[int] = typer.Option(None, "--max-customers", help="Contact at most this many customers."),
) -> None:
    """At most one offer per consenting active customer, maximising expected net value within the budget."""
    from serving.answers.retention_plan import read_offers, workspace_plan, write_plan

    settings = settings_from(ctx)
    path = Path(out) if out is not None else settings.outputs_dir / "retention_plan.parquet"
    if path.suffix.lower() not in {".csv", ".parquet"}:
        raise typer.BadParameter(f"out: {path} must end in .csv or .parquet")
    try:
        plan = workspace_plan(settings, budget, read_offers(offers) if offers else None, max_customers)
    except (ValueError, LookupError) as exc:
        raise typer.BadParameter(str(exc)) from exc
    write_plan(plan, path)
    typer.echo(f"{plan.summary()} -> {path}")


def serve_bench_command(
    ctx: typer.Context,
    rates: str = typer.Option("50,100,200,400", "--rates", help="Offered request rates per second, comma-separated."),
    seconds: float = typer.Option(10.0, "--seconds", help="Seconds of load per rate and endpoint."),
    workers: int = typer.Option(2, "--workers", help="Serving workers (production: one per core)."),
    port: int = typer.Option(3917, "--port", help="Port for the servers under test."),
) -> None:
    """Open-loop load at fixed rates on /recommend, /churn and POST /events, beside constant BentoML and FastAPI
    endpoints."""
    from benchmarks.serve import TARGET_P99_MS, run_serve_bench

    settings = settings_from(ctx)
    config = (ctx.find_root().obj or {}).get("config")
    typer.echo("| endpoint | offered/s | achieved/s | p50 ms | p95 ms | p99 ms | errors |\n"
               "|---|---|---|---|---|---|---|")
    report = run_serve_bench(settings, config, [float(r) for r in rates.split(",")], seconds, workers,
                             echo=typer.echo, port=port)
    for name, rate in report["highest_rate_held"].items():
        typer.echo(f"{name}: highest rate held with p99 <= {TARGET_P99_MS[name]:.0f} ms and no error: {rate:.0f}/s"
                   f" ({report['share_of_floor'][name]} of the BentoML floor's)")
    typer.echo(f"resident memory (MB, largest first): Patron {report['rss_mb_patron']}, floor {report['rss_mb_floor']}"
               f", FastAPI floor {report['rss_mb_fastapi_floor']}; Patron ready in {report['startup_s_patron']} s")


def register_serving_commands(app: typer.Typer) -> None:
    """Add the serving commands to the root command."""
    app.command("serve")(serve)
    app.add_typer(score_app, name="score", help="Batch scores written to files.")
    app.add_typer(events_app, name="events", help="Live events recorded by the service.")
    app.add_typer(retention_app, name="retention", help="Retention plans: whom to contact with which offer.")
    app.add_typer(recommend_app, name="recommend", help="Batch recommendations written to files.")
    from patron.cli.train import bench_app

    bench_app.command("serve")(serve_bench_command)
