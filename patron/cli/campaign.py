"""Commands `patron campaign ...`: retention campaigns with a holdout, and their readouts."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from patron.cli.context import settings_from

campaign_app = typer.Typer(
    name="campaign", no_args_is_help=True, help="Retention campaigns with a control group, and what they achieved."
)


@campaign_app.command("create")
def create(
    ctx: typer.Context,
    budget: float = typer.Option(..., "--budget", help="Total the treated customers' offers may cost."),
    holdout: float | None = typer.Option(
        None, "--holdout", help="Share of the planned customers held out with no offer, in (0, 0.5] (default: config)."
    ),
    name: str | None = typer.Option(None, "--name", help="Campaign name (default: retention-<send day>)."),
    out: Path | None = typer.Option(None, "--out", help="Also export the treated customers to this CSV or Parquet."),
) -> None:
    """Turn the retention plan into a campaign: treatment and a seeded, stratified holdout, written to the workspace."""
    from features.tables.export import write_csv_or_parquet
    from serving.answers.campaigns import workspace_campaign

    settings = settings_from(ctx)
    if out is not None and out.suffix.lower() not in {".csv", ".parquet"}:
        raise typer.BadParameter(f"out: {out} must end in .csv or .parquet")
    try:
        made = workspace_campaign(settings, budget, holdout, name)
    except (ValueError, LookupError) as exc:
        raise typer.BadParameter(str(exc)) from exc
    folder = settings.campaigns_dir / made.campaign.id
    typer.echo(f"{made.summary()} -> {folder}")
    if out is not None:
        from features.tables.campaigns import EXPORT_COLUMNS

        write_csv_or_parquet(made.campaign.treated()[EXPORT_COLUMNS].reset_index(drop=True), out)
        typer.echo(f"treated customers -> {out}")


@campaign_app.command("list")
def list_command(ctx: typer.Context) -> None:
    """Every campaign: id, send day, arms, spend."""
    from features.tables.campaigns import list_campaigns

    for m in list_campaigns(settings_from(ctx).campaigns_dir):
        typer.echo(
            f"{m['id']}: sent {m['sent_at'][:10]}, {m['treatment']} treated, {m['holdout']} held out, "
            f"spend {m['spend']:.2f}"
        )


@campaign_app.command("report")
def report(
    ctx: typer.Context,
    campaign_id: str = typer.Argument(..., help="The campaign id (patron campaign list)."),
    out: Path | None = typer.Option(None, "--out", help="HTML file (default: WORKSPACE/reports/campaign-<id>.html)."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the readout as JSON here."),
) -> None:
    """Treatment vs holdout per offer and segment, with intervals and verdicts; HTML report logged to MLflow."""
    from features.tables.store import write_json
    from patron.reports.campaign import campaign_report

    try:
        path, result = campaign_report(settings_from(ctx), campaign_id, out)
    except LookupError as exc:
        raise typer.BadParameter(str(exc)) from exc
    if result["provisional"]:
        typer.echo(
            f"provisional: outcomes observed until {result['window']['observed_until'][:10]} of a window "
            f"ending {result['window']['end'][:10]}"
        )
    for g in result["overall"] + result["by_offer"] + result["by_segment"]:
        typer.echo(g["verdict"])
    if json_out is not None:
        write_json(json.loads(json.dumps(result, default=str)), json_out)
    typer.echo(f"report -> {path}")
