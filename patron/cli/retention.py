"""Commands `patron retention ...`: retention plans written to files."""

from __future__ import annotations

from pathlib import Path

import typer

from patron.cli.context import settings_from

retention_app = typer.Typer(
    name="retention", no_args_is_help=True, help="Retention plans: whom to contact with which offer."
)


@retention_app.command("plan")
def retention_plan_command(
    ctx: typer.Context,
    budget: float = typer.Option(..., "--budget", help="Total the offers may cost."),
    offers: Path | None = typer.Option(
        None,
        "--offers",
        help="YAML/JSON {offer_type: cost} or CSV offer_type,cost (default: retention.offers of the config).",
    ),
    out: Path | None = typer.Option(
        None, "--out", help="CSV or Parquet file (default: <workspace>/outputs/retention_plan.parquet)."
    ),
    max_customers: int | None = typer.Option(None, "--max-customers", help="Contact at most this many customers."),
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
