"""Commands `patron recommend ...`: batch recommendations written to files."""

from __future__ import annotations

from pathlib import Path

import typer

from patron.cli.context import settings_from
from patron.progress import enabled

recommend_app = typer.Typer(name="recommend", no_args_is_help=True, help="Batch recommendations written to files.")


@recommend_app.command("batch")
def recommend_batch_command(
    ctx: typer.Context,
    out: Path = typer.Option(..., "--out", help="CSV or Parquet file (by extension), written atomically."),
    k: int | None = typer.Option(None, "--k", help="Items per customer (default: batch_recommend.k, 20)."),
    customers: Path | None = typer.Option(
        None, "--customers", help="Only these customers: a file with a customer_id column, or one id per line."
    ),
    segment: str | None = typer.Option(
        None, "--segment", help="Only this lifecycle stage (new, active, at_risk, lapsed)."
    ),
    workers: int | None = typer.Option(None, "--workers", help="Processes (default: one per core)."),
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
