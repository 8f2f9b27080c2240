"""`patron train recommender`: ALS (or the two-stage pipeline over it) evaluated on a time-based holdout against
popularity, refit on all data, logged and registered in MLflow."""

from __future__ import annotations

from pathlib import Path
from tempfile import TemporaryDirectory
from types import SimpleNamespace

import implicit
import lightgbm as lgb
import mlflow
import numpy as np
import pandas as pd
import scipy
from mlflow.models import infer_signature
from scipy.sparse import csr_matrix

from features.pit import build
from features.privacy.consent import consent_refusals
from features.tables.store import fingerprint, read_table
from patron.config import Settings
from training.mlops import plots, registry, tracking
from training.mlops.metrics import ranking_metrics
from training.recommend.als import ALSRecommender, factor_model, fit_recommender
from training.recommend.artifacts import RecommenderModel, save_artifacts
from training.recommend.base import Recommender

MODEL = "recommender"


def consenting_customers(settings: Settings, customers: pd.Series) -> set[str]:
    """Customers whose latest consent record allows personalisation (everyone when there is no consent table)."""
    return set(customers.astype(str)) - consent_refusals(settings, "personalization")


def holdout_matrices(
    settings: Settings, rec: ALSRecommender, train: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp
) -> tuple[csr_matrix, pd.DataFrame]:
    """Holdout purchases in [start, end) by known customers of known items not already had in training."""
    events = read_table(settings.tables_dir, "events", columns=["customer_id", "item_id", "ts", "type"])
    bought = events[(events["type"] == "purchase") & (events["ts"] >= start) & (events["ts"] < end)]
    pairs = bought[["customer_id", "item_id"]].astype(str).drop_duplicates()
    seen = train[["customer_id", "item_id"]].astype(str).drop_duplicates()
    pairs = pairs.merge(seen, how="left", indicator=True).query("_merge == 'left_only'").drop(columns="_merge")
    pairs = pairs[pairs["customer_id"].map(rec.knows_customer) & pairs["item_id"].map(rec.knows_item)]
    pairs = pairs.sort_values(["customer_id", "item_id"], ignore_index=True)
    rows = pd.Index(rec.customer_ids).get_indexer(pairs["customer_id"])
    cols = pd.Index(rec.item_ids).get_indexer(pairs["item_id"])
    test = csr_matrix((np.ones(len(pairs), np.float32), (rows, cols)), shape=rec.user_items.shape)
    return test, pairs


def log_recommender(rec: Recommender) -> str:
    """Log the recommender (ALS or two-stage) as a pyfunc model and return its model URI (registered by the caller).

    Its artifacts are artifacts/recommender (ALS) and, for a two-stage pipeline, artifacts/two_stage, which
    `serving.champions.load` reads without the pyfunc wrapper."""
    with TemporaryDirectory() as tmp:
        parts = save_artifacts(rec, Path(tmp))
        example = pd.DataFrame({"customer_id": ["C-EXAMPLE-1", "C-EXAMPLE-2"], "k": [3, 5]})
        wrapper = RecommenderModel()
        wrapper.recommender = rec
        signature = infer_signature(example, wrapper.predict(None, example))
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=RecommenderModel(),
            artifacts=parts,
            signature=signature,
            input_example=example,
            pip_requirements=[
                f"implicit=={implicit.__version__}",
                f"numpy=={np.__version__}",
                f"scipy=={scipy.__version__}",
                f"pandas=={pd.__version__}",
                f"mlflow=={mlflow.__version__}",
                f"lightgbm=={lgb.__version__}",
            ],
        )
    return info.model_uri


def train_recommender(settings: Settings) -> tracking.TrainResult:
    """Evaluate ALS against popularity on a time-based holdout, then refit on all data and register it."""
    cfg = settings.recommender
    end = build.data_end(settings)
    holdout_start = end - pd.Timedelta(days=cfg.holdout_days)
    with tracking.patron_run(settings, MODEL, cfg) as run:
        train = build.interactions(settings, holdout_start)
        rec = fit_recommender(train, cfg, consenting_customers(settings, train["customer_id"]))
        test, pairs = holdout_matrices(settings, rec, train, holdout_start, end)
        als_metrics = ranking_metrics(rec.model, rec.user_items, test, cfg.k)
        pop_model = factor_model(np.ones((rec.user_items.shape[0], 1)), rec.popularity[:, None])
        pop_metrics = ranking_metrics(pop_model, rec.user_items, test, cfg.k)
        if cfg.pipeline == "two_stage":  # the pipeline's metrics become the version's; ALS's are logged beside
            # imported only for this pipeline: it brings torch and optuna, which an ALS run never needs
            from training.recommend.two_stage import fit_two_stage

            mlflow.log_params(tracking.flat_params(settings.two_stage, "two_stage"))
            two = fit_two_stage(settings, rec, holdout_start)
            mlflow.log_metrics({f"als_{k}": v for k, v in als_metrics.items()})
            als_metrics = ranking_metrics(SimpleNamespace(recommend=two.recommend_batch), rec.user_items, test, cfg.k)
        eval_fp = fingerprint(
            pd.concat([train.assign(split="train"), pairs.assign(split="holdout", weight=1.0)], ignore_index=True)
        )
        tracking.log_dataset_digest(train, "interactions_before_holdout", "training")
        tracking.log_dataset_digest(pairs, "holdout_purchases", "test")
        mlflow.log_params(
            {
                "eval_train_cutoff": holdout_start.date().isoformat(),
                "holdout_end": end.date().isoformat(),
                "final_fit_cutoff": end.date().isoformat(),
            }
        )
        mlflow.log_metrics(als_metrics)
        mlflow.log_metrics({f"popularity_{k}": v for k, v in pop_metrics.items()})
        shown = [f"recall_at_{cfg.k}", f"ndcg_at_{cfg.k}", f"map_at_{cfg.k}", "catalogue_coverage"]
        mlflow.log_figure(
            plots.metric_bars(
                {"ALS": als_metrics, "popularity": pop_metrics}, shown, f"Holdout of the last {cfg.holdout_days} days"
            ),
            "plots/als_vs_popularity.png",
        )

        # The registered model is refit on everything up to the end of the data with the evaluated params.
        full = build.interactions(settings, end)
        final = fit_recommender(full, cfg, consenting_customers(settings, full["customer_id"]))
        if cfg.pipeline == "two_stage":
            final = fit_two_stage(settings, final, end)
        tracking.log_dataset_digest(full, "interactions_all", "training")
        mlflow.set_tag(
            "patron.final_fit",
            f"refit on all interactions before {end.date()} with the same params; "
            f"metrics are from the fit before {holdout_start.date()}",
        )
        mlflow.set_tag(tracking.FINGERPRINT_TAG, eval_fp)
        model_uri = log_recommender(final)
        tracking.fault_pause("model_logged")
        primary = f"ndcg_at_{cfg.k}"
        version = registry.register_version(settings, MODEL, model_uri, eval_fp, primary, als_metrics[primary])
        metrics = {**als_metrics, **{f"popularity_{k}": v for k, v in pop_metrics.items()}}
        return tracking.TrainResult(MODEL, run.info.run_id, version, metrics)
