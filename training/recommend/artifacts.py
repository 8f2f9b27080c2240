"""A recommender as a logged model's artifacts: saved and read back by pipeline, and its MLflow pyfunc wrapper."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd

from training.recommend.als import ALSRecommender
from training.recommend.base import ALS_ARTIFACT, TWO_STAGE_ARTIFACT, TWO_STAGE_META, Recommender


def is_two_stage(folder: Path) -> bool:
    """Whether an artifacts folder (holding recommender/) also holds a two-stage pipeline."""
    return (Path(folder) / TWO_STAGE_ARTIFACT / TWO_STAGE_META).exists()


def save_artifacts(rec: Recommender, folder: Path) -> dict[str, str]:
    """Save the recommender into an artifacts folder; returns each artifact's name and path, as MLflow takes them."""
    folder = Path(folder)
    # ALS alone keeps its files in recommender/; a pipeline writes its ALS there itself, beside its own parts
    rec.save(folder / ALS_ARTIFACT if isinstance(rec, ALSRecommender) else folder)
    return {part.name: str(part) for part in sorted(folder.iterdir())}


def load_recommender(folder: Path) -> Recommender:
    """The recommender in a logged model's artifacts folder: two-stage when it holds one, else ALS."""
    folder = Path(folder)
    if not is_two_stage(folder):
        return ALSRecommender.load(folder / ALS_ARTIFACT)
    # imported here: the two-stage pipeline brings torch and optuna (~250 MB a process), which ALS never needs
    from training.recommend.two_stage import TwoStageRecommender

    return TwoStageRecommender.load(folder)


class RecommenderModel(mlflow.pyfunc.PythonModel):
    """MLflow pyfunc around a Recommender: rows [customer_id, k] -> recommended items, popularity when unknown."""

    recommender: Recommender

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        """Read the recommender from the logged model's artifacts."""
        self.recommender = load_recommender(Path(context.artifacts[ALS_ARTIFACT]).parent)

    def predict(self, context: object, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        """Recommendations in long form [customer_id, rank, item_id, score, source]."""
        rows = []
        for customer_id, k in zip(model_input["customer_id"].astype(str), model_input["k"].astype(int)):
            known = self.recommender.knows_customer(customer_id)
            recs = self.recommender.recommend(customer_id, k) if known else self.recommender.popular(k)
            source = "personal" if known else "popular"
            rows += [(customer_id, rank, item, score, source) for rank, (item, score) in enumerate(recs, 1)]
        return pd.DataFrame(rows, columns=["customer_id", "rank", "item_id", "score", "source"])
