"""Commands `patron tune ...`: Optuna studies of the recommender and the churn model."""

from __future__ import annotations

import typer

from patron.cli.context import settings_from

tune_app = typer.Typer(name="tune", no_args_is_help=True, help="Hyper-parameter studies (Optuna) stored beside MLflow.")


@tune_app.command("recommender")
def tune_recommender_command(
    ctx: typer.Context,
    trials: int | None = typer.Option(None, "--trials", min=1, help="Trials to run (default: tune.trials)"),
    study: str | None = typer.Option(
        None, "--study", help="Study name; an existing one is continued (default: tune.study)"
    ),
) -> None:
    """Optuna study (TPE, median pruning per ALS iteration block) of the recommender on the validation window;
    trials are nested MLflow runs; the best version is registered with the candidate alias."""
    from training.tune.recommender import TuneError, tune_recommender

    try:
        result = tune_recommender(settings_from(ctx), trials, study, echo=typer.echo)
    except TuneError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(result.summary())


@tune_app.command("churn")
def tune_churn_command(
    ctx: typer.Context,
    trials: int | None = typer.Option(None, "--trials", min=1, help="Trials to run (default: churn_tune.trials)"),
    study: str | None = typer.Option(
        None, "--study", help="Study name; an existing one is continued (default: churn_tune.study)"
    ),
) -> None:
    """Optuna study (TPE, median pruning on the validation log loss every few boosting rounds) of the churn
    booster on the validation cutoff; trials are nested MLflow runs; the best version is registered as candidate."""
    from training.tune.churn import tune_churn
    from training.tune.recommender import TuneError

    try:
        result = tune_churn(settings_from(ctx), trials, study, echo=typer.echo)
    except TuneError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(result.summary())
