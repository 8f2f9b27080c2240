"""Commands `patron train ...` and `patron promote ...`."""

from __future__ import annotations

import time
from enum import Enum
from typing import Optional

import typer

from patron.cli.context import settings_from
from patron.progress import bar


class Trainable(str, Enum):
    recommender = "recommender"
    churn = "churn"
    clv = "clv"
    uplift = "uplift"
    sequence = "sequence"
    all = "all"


class Promotable(str, Enum):
    recommender = "recommender"
    churn = "churn"
    clv = "clv"
    uplift = "uplift"


def train(ctx: typer.Context,
          model: Trainable = typer.Argument(..., help="recommender, churn, clv, uplift, sequence, or all "
                                                                    "(recommender and churn)")
          ) -> None:
    """Train, evaluate and register a model (an MLflow run each); prints metrics and registered versions."""
    from training.churn.train import train_churn
    from training.value.clv import train_clv
    from training.recommend.als import train_recommender
    from training.recommend.sequence import train_sequence
    from training.value.uplift import train_uplift

    settings = settings_from(ctx)
    trainers = {"recommender": train_recommender, "churn": train_churn, "clv": train_clv, "uplift": train_uplift,
                "sequence": train_sequence}
    chosen = ["recommender", "churn"] if model is Trainable.all else [model.value]
    started = time.perf_counter()
    for name in bar(chosen, desc="train", unit="model"):
        result = trainers[name](settings)
        typer.echo(result.summary())
    typer.echo(f"trained {', '.join(chosen)} in {time.perf_counter() - started:.1f}s; "
               f"promote with `patron promote <model>`")


def promote(ctx: typer.Context,
            model: Promotable = typer.Argument(..., help="recommender, churn, clv or uplift"),
            version: Optional[int] = typer.Option(None, "--version", help="Version to promote (default: latest)."),
            force: bool = typer.Option(False, "--force", help="Promote even if it does not beat the champion.")
            ) -> None:
    """Point the champion alias at a registered version if it beats the current champion on the same data."""
    from training.mlops.registry import PromotionRefused
    from training.mlops.registry import promote as promote_version

    try:
        result = promote_version(settings_from(ctx), model.value, version=version, force=force)
    except PromotionRefused as exc:
        typer.echo(f"promotion refused: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(result.message)


bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks of model quality.")


@bench_app.command("churn-oracle")
def churn_oracle(ctx: typer.Context) -> None:
    """Champion churn ROC-AUC against the synthetic generator's oracle at the test cutoff."""
    from benchmarks.churn_oracle import churn_oracle_gap

    typer.echo(churn_oracle_gap(settings_from(ctx)).summary())


class BenchDataset(str, Enum):
    cdnow = "cdnow"
    synthetic = "synthetic"


def _run_table_bench(ctx: typer.Context, run, dataset: "BenchDataset") -> None:
    report, paths = run(settings_from(ctx), dataset.value, echo=typer.echo)
    typer.echo(report.markdown())
    typer.echo("wrote " + ", ".join(str(p) for p in paths))


@bench_app.command("churn")
def churn_bench(ctx: typer.Context,
                dataset: BenchDataset = typer.Option(..., "--dataset", help="cdnow or synthetic")) -> None:
    """Patron's churn model vs BG/NBD (lifetimes) vs recency on the same cutoff and label; Markdown + JSON table."""
    from benchmarks.churn import run_churn_bench

    _run_table_bench(ctx, run_churn_bench, dataset)


@bench_app.command("clv")
def clv_bench(ctx: typer.Context,
              dataset: BenchDataset = typer.Option(..., "--dataset", help="cdnow or synthetic")) -> None:
    """Patron's CLV vs BG/NBD + Gamma-Gamma (lifetimes), customer-disjoint CV at one cutoff; Markdown + JSON table."""
    from training.value.clv import run_clv_bench

    _run_table_bench(ctx, run_clv_bench, dataset)


@bench_app.command("uplift")
def uplift_bench(ctx: typer.Context) -> None:
    """Offer uplift on held-out synthetic customers: Qini, AUUC and value kept against the generator's truth."""
    from benchmarks.uplift import run_uplift_bench

    report, paths = run_uplift_bench(settings_from(ctx), echo=typer.echo)
    typer.echo(report.markdown())
    typer.echo("wrote " + ", ".join(str(p) for p in paths))


@bench_app.command("recsys")
def recsys(ctx: typer.Context,
           dataset: str = typer.Option(..., "--dataset", help="ml100k, synthetic or the folder of an ingested "
                                                              "workspace"),
           trials: Optional[int] = typer.Option(None, "--trials", min=1,
                                                help="Optuna trials per tuned model (default: recsys_bench.trials)"),
           out: Optional[str] = typer.Option(None, "--out", help="Folder for the tables (default: WORKSPACE/bench)")
           ) -> None:
    """Tuned peers and Patron's two-stage recommender on RecBole's TO RS 8:1:1 protocol; Markdown + JSON tables."""
    from pathlib import Path

    from benchmarks.recsys import BenchError, run_bench

    try:
        report = run_bench(settings_from(ctx), dataset, trials, Path(out) if out else None, echo=typer.echo)
    except BenchError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"wrote {', '.join(report['written'])} in {report['seconds']:.0f}s")


tune_app = typer.Typer(no_args_is_help=True, help="Hyper-parameter studies (Optuna) stored beside MLflow.")


@tune_app.command("recommender")
def tune_recommender_command(
        ctx: typer.Context,
        trials: Optional[int] = typer.Option(None, "--trials", min=1, help="Trials to run (default: tune.trials)"),
        study: Optional[str] = typer.Option(None, "--study", help="Study name; an existing one is continued "
                                                                   "(default: tune.study)")) -> None:
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
        trials: Optional[int] = typer.Option(None, "--trials", min=1,
                                             help="Trials to run (default: churn_tune.trials)"),
        study: Optional[str] = typer.Option(None, "--study", help="Study name; an existing one is continued "
                                                                   "(default: churn_tune.study)")) -> None:
    """Optuna study (TPE, median pruning on the validation log loss every few boosting rounds) of the churn
    booster on the validation cutoff; trials are nested MLflow runs; the best version is registered as candidate."""
    from training.tune.recommender import TuneError
    from training.tune.churn import tune_churn

    try:
        result = tune_churn(settings_from(ctx), trials, study, echo=typer.echo)
    except TuneError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(result.summary())


def register_training_commands(app: typer.Typer) -> None:
    """Add the training commands to the root command."""
    app.command("train")(train)
    app.command("promote")(promote)
    app.add_typer(bench_app, name="bench")
    app.add_typer(tune_app, name="tune")
