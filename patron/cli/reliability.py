"""Commands `patron bench fuzz` and `patron bench soak`: the service against hostile requests and against time."""

from __future__ import annotations

import os
from typing import Optional

import typer

from patron.cli.context import settings_from


def fuzz_command(
    ctx: typer.Context,
    examples: int = typer.Option(200, "--examples", help="Generated requests per operation and mode "
                                 "(schema-valid, schema-invalid)."),
    url: Optional[str] = typer.Option(None, "--url", help="Fuzz a running server instead (its key from "
                                      "$PATRON_API_KEY); default: start one over the workspace."),
    port: int = typer.Option(3919, "--port", help="Port for the server this command starts."),
) -> None:
    """Schemathesis against the service's own OpenAPI: no 5xx and no answer outside the declared schema."""
    from benchmarks.fuzz import fuzz_api, write_fuzz_report
    from benchmarks.soak import scratch_service

    settings = settings_from(ctx)
    config = (ctx.find_root().obj or {}).get("config")
    out = settings.outputs_dir / "bench_fuzz"
    if url:
        key = os.environ.get("PATRON_API_KEY", "")
        report = fuzz_api(url, {"Authorization": f"Bearer {key}"} if key else {}, examples)
    else:
        with scratch_service(settings, config, settings.serving.workers, port, out, rate=1e6) as (_, url, key):
            report = fuzz_api(url, {"Authorization": f"Bearer {key}"}, examples)
    json_path, md_path = write_fuzz_report(report, out)
    typer.echo(report.markdown())
    typer.echo(f"-> {json_path}, {md_path}")
    if report.server_errors or report.violations:
        raise typer.Exit(1)


def soak_command(
    ctx: typer.Context,
    minutes: float = typer.Option(10.0, "--minutes", help="Minutes of steady load."),
    rate: Optional[float] = typer.Option(None, "--rate", help="Requests per second (default: soak.rate_per_s)."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Serving workers (default: one per core)."),
) -> None:
    """Steady mixed traffic (recommend, churn, events) for N minutes: errors, p50/p99 per minute, memory growth."""
    from benchmarks.soak import run_soak, soak_markdown

    settings = settings_from(ctx)
    report = run_soak(settings, (ctx.find_root().obj or {}).get("config"), minutes, rate, workers,
                      echo=typer.echo)
    typer.echo(soak_markdown(report))
    typer.echo(f"-> {settings.outputs_dir / 'bench_soak' / 'soak.json'}")
    if not report["ok"]:
        raise typer.Exit(1)


def register_reliability_commands() -> None:
    """Add `fuzz` and `soak` to `patron bench`."""
    from patron.cli.train import bench_app

    bench_app.command("fuzz")(fuzz_command)
    bench_app.command("soak")(soak_command)
