"""Commands `patron bench ...`: model quality against baselines and oracles, and the service under load, over time
and against hostile requests."""

from __future__ import annotations

import os
from collections.abc import Callable
from enum import Enum
from pathlib import Path

import typer

from patron.cli.context import config_path, settings_from

bench_app = typer.Typer(name="bench", no_args_is_help=True, help="Benchmarks of model quality.")


class BenchDataset(str, Enum):
    cdnow = "cdnow"
    synthetic = "synthetic"


def _run_table_bench(ctx: typer.Context, run: Callable, dataset: BenchDataset) -> None:
    report, paths = run(settings_from(ctx), dataset.value, echo=typer.echo)
    typer.echo(report.markdown())
    typer.echo("wrote " + ", ".join(str(p) for p in paths))


@bench_app.command("churn-oracle")
def churn_oracle(ctx: typer.Context) -> None:
    """Champion churn ROC-AUC against the synthetic generator's oracle at the test cutoff."""
    from benchmarks.churn_oracle import run_churn_oracle

    gap, paths = run_churn_oracle(settings_from(ctx))
    typer.echo(gap.summary())
    typer.echo("wrote " + ", ".join(str(p) for p in paths))


@bench_app.command("churn")
def churn_bench(
    ctx: typer.Context, dataset: BenchDataset = typer.Option(..., "--dataset", help="cdnow or synthetic")
) -> None:
    """Patron's churn model vs BG/NBD (lifetimes) vs recency on the same cutoff and label; Markdown + JSON table."""
    from benchmarks.churn import run_churn_bench

    _run_table_bench(ctx, run_churn_bench, dataset)


@bench_app.command("clv")
def clv_bench(
    ctx: typer.Context, dataset: BenchDataset = typer.Option(..., "--dataset", help="cdnow or synthetic")
) -> None:
    """Patron's CLV vs BG/NBD + Gamma-Gamma (lifetimes), customer-disjoint CV at one cutoff; Markdown + JSON table."""
    from benchmarks.clv import run_clv_bench

    _run_table_bench(ctx, run_clv_bench, dataset)


@bench_app.command("uplift")
def uplift_bench(ctx: typer.Context) -> None:
    """Offer uplift on held-out synthetic customers: Qini, AUUC and value kept against the generator's truth."""
    from benchmarks.uplift import run_uplift_bench

    report, paths = run_uplift_bench(settings_from(ctx), echo=typer.echo)
    typer.echo(report.markdown())
    typer.echo("wrote " + ", ".join(str(p) for p in paths))


@bench_app.command("campaign")
def campaign_bench(ctx: typer.Context) -> None:
    """Campaign readout vs the generator's true offer effects: interval coverage over seeded repetitions, widths."""
    from benchmarks.campaign import run_campaign_bench

    report, paths = run_campaign_bench(settings_from(ctx), echo=typer.echo)
    typer.echo(report.markdown())
    typer.echo("wrote " + ", ".join(str(p) for p in paths))


@bench_app.command("plan-calibration")
def plan_calibration(
    ctx: typer.Context,
    seeds: str = typer.Option("42,7,2026", "--seeds", help="Uplift seeds, comma-separated"),
    budgets: str = typer.Option("500,2000", "--budgets", help="Plan budgets, comma-separated"),
) -> None:
    """The retention plan's expected vs realised net value with raw and calibrated offer effects (synthetic data)."""
    from benchmarks.plan_calibration import run_plan_calibration

    try:
        seed_list = [int(s) for s in seeds.split(",")]
    except ValueError as exc:
        raise typer.BadParameter(f"seeds: {seeds!r} is not a comma-separated list of integers") from exc
    try:
        budget_list = [float(b) for b in budgets.split(",")]
    except ValueError as exc:
        raise typer.BadParameter(f"budgets: {budgets!r} is not a comma-separated list of numbers") from exc
    report, paths = run_plan_calibration(settings_from(ctx), seed_list, budget_list, echo=typer.echo)
    typer.echo(report.markdown())
    typer.echo("wrote " + ", ".join(str(p) for p in paths))


@bench_app.command("recsys")
def recsys(
    ctx: typer.Context,
    dataset: str = typer.Option(..., "--dataset", help="ml100k, synthetic or the folder of an ingested workspace"),
    trials: int | None = typer.Option(
        None, "--trials", min=1, help="Optuna trials per tuned model (default: recsys_bench.trials)"
    ),
    out: str | None = typer.Option(None, "--out", help="Folder for the tables (default: WORKSPACE/bench)"),
) -> None:
    """Tuned peers and Patron's two-stage recommender on RecBole's TO RS 8:1:1 protocol; Markdown + JSON tables."""
    from benchmarks.recsys import BenchError, run_bench

    try:
        report, paths = run_bench(settings_from(ctx), dataset, trials, Path(out) if out else None, echo=typer.echo)
    except BenchError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"wrote {', '.join(str(p) for p in paths)} in {report.seconds:.0f}s")


@bench_app.command("serve")
def serve_bench(
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
    typer.echo(
        "| endpoint | offered/s | achieved/s | p50 ms | p95 ms | p99 ms | errors |\n|---|---|---|---|---|---|---|"
    )
    report = run_serve_bench(
        settings, config_path(ctx), [float(r) for r in rates.split(",")], seconds, workers, echo=typer.echo, port=port
    )
    info = report.details
    for name, rate in info["highest_rate_held"].items():
        typer.echo(
            f"{name}: highest rate held with p99 <= {TARGET_P99_MS[name]:.0f} ms and no error: {rate:.0f}/s"
            f" ({info['share_of_floor'][name]} of the BentoML floor's)"
        )
    typer.echo(
        f"resident memory (MB, largest first): Patron {info['rss_mb_patron']}, floor {info['rss_mb_floor']}"
        f", FastAPI floor {info['rss_mb_fastapi_floor']}; Patron ready in {info['startup_s_patron']} s"
    )


@bench_app.command("fuzz")
def fuzz(
    ctx: typer.Context,
    examples: int = typer.Option(100, "--examples", help="Schemathesis's --max-examples per operation."),
    workers: int = typer.Option(2, "--workers", help="Schemathesis workers (concurrent requests)."),
    server_workers: int = typer.Option(2, "--server-workers", help="Workers of the server this command starts."),
    url: str | None = typer.Option(
        None,
        "--url",
        help="Fuzz a running server instead (its key from $PATRON_API_KEY); default: start one over the workspace.",
    ),
    port: int = typer.Option(3919, "--port", help="Port for the server this command starts."),
) -> None:
    """Schemathesis's own CLI, every check and phase: no 5xx, no failing check, no Schemathesis error."""
    from benchmarks.fuzz import fuzz_api, write_fuzz_report
    from benchmarks.soak import scratch_service

    settings = settings_from(ctx)
    out = settings.outputs_dir / "bench_fuzz"
    if url:
        key = os.environ.get("PATRON_API_KEY", "")
        report = fuzz_api(url, {"Authorization": f"Bearer {key}"} if key else {}, examples, workers, out / "st")
    else:
        with scratch_service(settings, config_path(ctx), server_workers, port, out, rate=1e6) as (_, url, key):
            report = fuzz_api(url, {"Authorization": f"Bearer {key}"}, examples, workers, out / "st")
    json_path, md_path = write_fuzz_report(report, out, settings)
    typer.echo(report.markdown())
    typer.echo(f"-> {json_path}, {md_path}; Schemathesis's own reports in {out / 'st'}")
    if report.server_errors or report.violations or report.error_count:
        raise typer.Exit(1)


@bench_app.command("soak")
def soak(
    ctx: typer.Context,
    minutes: float = typer.Option(10.0, "--minutes", help="Minutes of steady load."),
    rate: float | None = typer.Option(None, "--rate", help="Requests per second (default: soak.rate_per_s)."),
    workers: int | None = typer.Option(None, "--workers", help="Serving workers (default: one per core)."),
) -> None:
    """Steady mixed traffic (recommend, churn, events) for N minutes: errors, p50/p99 per minute, memory growth."""
    from benchmarks.soak import run_soak, soak_markdown

    settings = settings_from(ctx)
    report = run_soak(settings, config_path(ctx), minutes, rate, workers, echo=typer.echo)
    typer.echo(soak_markdown(report))
    typer.echo(f"-> {settings.outputs_dir / 'bench_soak' / 'soak.json'}")
    if not report.summary["ok"]:
        raise typer.Exit(1)
