"""Command `patron train`: train, evaluate and register models."""

from __future__ import annotations

import time
from enum import Enum

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


def train(
    ctx: typer.Context,
    model: Trainable = typer.Argument(
        ..., help="recommender, churn, clv, uplift, sequence, or all (recommender and churn)"
    ),
) -> None:
    """Train, evaluate and register a model (an MLflow run each); prints metrics and registered versions."""
    from training.churn.train import train_churn
    from training.recommend.sequence import train_sequence
    from training.recommend.train import train_recommender
    from training.value.clv import train_clv
    from training.value.uplift import train_uplift

    settings = settings_from(ctx)
    trainers = {
        "recommender": train_recommender,
        "churn": train_churn,
        "clv": train_clv,
        "uplift": train_uplift,
        "sequence": train_sequence,
    }
    chosen = ["recommender", "churn"] if model is Trainable.all else [model.value]
    started = time.perf_counter()
    for name in bar(chosen, desc="train", unit="model"):
        result = trainers[name](settings)
        typer.echo(result.summary())
    typer.echo(
        f"trained {', '.join(chosen)} in {time.perf_counter() - started:.1f}s; promote with `patron promote <model>`"
    )
