"""ALS recommender (implicit) with a popularity fallback, its MLflow pyfunc wrapper and its training run."""

from __future__ import annotations

import json
import weakref
from pathlib import Path
from tempfile import TemporaryDirectory
from types import SimpleNamespace
from typing import Any

import implicit
import lightgbm as lgb
import mlflow
import numpy as np
import pandas as pd
import scipy
from implicit.cpu.als import AlternatingLeastSquares as CpuALS
from mlflow.models import infer_signature
from scipy.sparse import csr_matrix
from threadpoolctl import threadpool_limits

from features.privacy.consent import consent_refusals
from features.tables.store import atomic_write_bytes, fingerprint, read_table, write_json
from patron.config import RecommenderConfig, Settings
from training.mlops import plots, registry, tracking
from training.mlops.metrics import ranking_metrics

MODEL = "recommender"


def _rank1_model(user_factors: np.ndarray, item_factors: np.ndarray) -> CpuALS:
    """An implicit model object around given factors, so implicit does the scoring and filtering."""
    with threadpool_limits(1, "blas"):  # silences implicit's BLAS-threads check; scoring is not affected
        model = CpuALS(factors=user_factors.shape[1], num_threads=1)
    model.user_factors = np.ascontiguousarray(user_factors, dtype=np.float32)
    model.item_factors = np.ascontiguousarray(item_factors, dtype=np.float32)
    return model


def _valid(ids: np.ndarray, scores: np.ndarray, item_ids: np.ndarray) -> list[tuple[str, float]]:
    # implicit marks filtered entries with the lowest float32 score; drop them should any reach the answer
    keep = (ids >= 0) & (scores > np.finfo(np.float32).min)
    return [(str(item_ids[i]), float(s)) for i, s in zip(ids[keep], scores[keep])]


class Recommender:
    """Personalised ALS recommendations for known customers, item popularity for everyone else."""

    def __init__(self, customer_ids: list[str], item_ids: list[str], user_factors: np.ndarray,
                 item_factors: np.ndarray, user_items: csr_matrix, popularity: np.ndarray) -> None:
        self.customer_ids = np.asarray(customer_ids, dtype=object)
        self.item_ids = np.asarray(item_ids, dtype=object)
        self.user_items = user_items.tocsr()
        self.popularity = np.asarray(popularity, dtype=np.float64)
        self.model = _rank1_model(user_factors, item_factors)
        self._user_index = {c: i for i, c in enumerate(customer_ids)}
        self._item_index = {c: i for i, c in enumerate(item_ids)}
        self._item_position = pd.Index(self.item_ids)
        # id(frozenset) -> (weak ref to it, its item mask); an entry leaves when its frozenset dies
        self._masks: dict[int, tuple[weakref.ref, np.ndarray]] = {}
        # popularity order: highest score first, ties broken by item id
        self._popular_order = np.lexsort((self.item_ids.astype(str), -self.popularity))

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_masks": {}}  # weak references do not pickle; masks are rebuilt on use

    # --- queries ---------------------------------------------------------------------------------
    def knows_customer(self, customer_id: str) -> bool:
        """Whether the customer has personalised factors."""
        return customer_id in self._user_index

    def knows_item(self, item_id: str) -> bool:
        """Whether the item is in the catalogue the model was trained on."""
        return item_id in self._item_index

    def _indices(self, ids: set[str] | frozenset[str] | None) -> np.ndarray:
        if isinstance(ids, frozenset):  # large pools from the serving state: cached
            return np.flatnonzero(self.item_mask(ids))
        return np.array(sorted(self._item_index[i] for i in (ids or ()) if i in self._item_index), dtype=np.int64)

    def item_mask(self, ids: set[str] | frozenset[str] | None) -> np.ndarray:
        """Read-only boolean mask over the model's items, True for those in `ids`; kept while a frozenset lives."""
        # The serving state hands out one frozenset per stock snapshot and rules, so the ~20,000-item
        # lookup runs once per snapshot instead of several times per request.
        frozen = isinstance(ids, frozenset)
        if frozen:
            hit = self._masks.get(id(ids))
            if hit is not None and hit[0]() is ids:
                return hit[1]
        mask = np.zeros(len(self.item_ids), dtype=bool)
        if ids:
            position = self._item_position.get_indexer(list(ids))
            mask[position[position >= 0]] = True
        mask.flags.writeable = False
        if frozen:
            key, masks = id(ids), self._masks
            masks[key] = (weakref.ref(ids, lambda _, key=key: masks.pop(key, None)), mask)
        return mask

    def _blocked(self, allowed: set[str] | frozenset[str] | None, exclude: set[str] | frozenset[str],
                 *also: int) -> np.ndarray:
        """Sorted indices of the items outside `allowed` (none when None), in `exclude` or among `also`."""
        # implicit scores every item and drops these: cheaper than gathering the allowed items' factors
        blocked = np.zeros(len(self.item_ids), dtype=bool) if allowed is None else ~self.item_mask(allowed)
        blocked[self._indices(exclude)] = True
        blocked[list(also)] = True
        return np.flatnonzero(blocked)

    def recommend(self, customer_id: str, k: int, exclude: set[str] = frozenset(),
                  allowed: set[str] | None = None) -> list[tuple[str, float]]:
        """Top-k items for a known customer (KeyError when unknown), never in `exclude`, only from `allowed`."""
        user = self._user_index[customer_id]
        row = self.user_items[user]
        blocked = self._blocked(allowed, exclude)
        n = min(k, len(self.item_ids) - len(blocked))  # asking for more than remain pads the answer
        if n <= 0:
            return []
        ids, scores = self.model.recommend(user, row, N=n, filter_already_liked_items=False,
                                           filter_items=blocked if len(blocked) else None)
        return _valid(ids, scores, self.item_ids)[:k]

    def recommend_from_history(self, item_ids: list[str], weights: list[float], k: int,
                               exclude: set[str] = frozenset(), allowed: set[str] | None = None,
                               regularization: float | None = None, alpha: float | None = None
                               ) -> list[tuple[str, float]]:
        """Top-k items for a customer known only by live interactions, folded into the factors at request time."""
        cols = [self._item_index[i] for i in item_ids if i in self._item_index]
        vals = [float(w) for i, w in zip(item_ids, weights) if i in self._item_index]
        if not cols:
            return []
        row = csr_matrix((np.asarray(vals, np.float32), (np.zeros(len(cols), np.int64), cols)),
                         shape=(1, len(self.item_ids)))
        row.sum_duplicates()
        row.data = np.maximum(row.data, 0.0)  # returns can outweigh interest: no negative confidence
        row.eliminate_zeros()
        if row.nnz == 0:
            return []
        if regularization is not None:  # the training run's values: the model object only holds factors
            self.model.regularization = regularization
        if alpha is not None:
            self.model.alpha = alpha
        blocked = self._blocked(allowed, exclude)
        n = min(k, len(self.item_ids) - len(blocked))
        if n <= 0:
            return []
        ids, scores = self.model.recommend(0, row, N=n, filter_already_liked_items=False, recalculate_user=True,
                                           filter_items=blocked if len(blocked) else None)
        return _valid(ids, scores, self.item_ids)[:k]

    def popular(self, k: int, exclude: set[str] = frozenset(), allowed: set[str] | None = None
                ) -> list[tuple[str, float]]:
        """The k most popular items, never in `exclude`, only from `allowed`."""
        order = self._popular_order
        if allowed is not None:
            order = order[self.item_mask(allowed)[order]]
        order = order[~np.isin(order, self._indices(exclude))][:k]
        return [(str(self.item_ids[i]), float(self.popularity[i])) for i in order]

    def similar_items(self, item_id: str, k: int, allowed: set[str] | None = None,
                      exclude: set[str] | frozenset[str] = frozenset()) -> list[tuple[str, float]]:
        """Items whose factors are closest to the item's (KeyError when unknown), the item itself and `exclude`
        left out, only from `allowed`."""
        item = self._item_index[item_id]
        blocked = self._blocked(allowed, exclude, item)
        n = min(k, len(self.item_ids) - len(blocked))
        if n <= 0:
            return []
        ids, scores = self.model.similar_items(item, N=n, filter_items=blocked)
        return _valid(ids, scores, self.item_ids)[:k]

    # --- persistence -----------------------------------------------------------------------------
    def save(self, folder: Path) -> Path:
        """Write the model as factors.npz + ids.json in `folder`."""
        folder.mkdir(parents=True, exist_ok=True)
        with TemporaryDirectory() as tmp:
            np.savez(Path(tmp) / "f.npz", user_factors=self.model.user_factors, item_factors=self.model.item_factors,
                     popularity=self.popularity, data=self.user_items.data, indices=self.user_items.indices,
                     indptr=self.user_items.indptr, shape=np.array(self.user_items.shape))
            atomic_write_bytes(folder / "factors.npz", (Path(tmp) / "f.npz").read_bytes())
        write_json({"customer_ids": self.customer_ids.tolist(), "item_ids": self.item_ids.tolist()},
                   folder / "ids.json")
        return folder

    @classmethod
    def load(cls, folder: Path) -> "Recommender":
        """Read a model written by `save`."""
        ids = json.loads((Path(folder) / "ids.json").read_text())
        with np.load(Path(folder) / "factors.npz") as z:
            user_items = csr_matrix((z["data"], z["indices"], z["indptr"]), shape=tuple(z["shape"]))
            return cls(ids["customer_ids"], ids["item_ids"], z["user_factors"], z["item_factors"], user_items,
                       z["popularity"])


def fit_recommender(interactions: pd.DataFrame, config: RecommenderConfig,
                    personalise: set[str] | None = None) -> Recommender:
    """Fit ALS on [customer_id, item_id, weight] (weights as confidence); popularity from everyone's weights.

    `personalise` limits the customers who get factors (e.g. those who consented); None means all.
    """
    missing = {"customer_id", "item_id", "weight"} - set(interactions.columns)
    if missing:
        raise ValueError(f"interactions: missing column(s) {sorted(missing)}")
    if interactions.empty:
        raise ValueError("interactions: no rows to train on")
    items = pd.Categorical(interactions["item_id"].astype(str))
    popularity = interactions.groupby(items.codes)["weight"].sum().reindex(range(len(items.categories)),
                                                                          fill_value=0.0)
    mine = interactions if personalise is None else interactions[interactions["customer_id"].isin(personalise)]
    users = pd.Categorical(mine["customer_id"].astype(str))
    item_codes = items.codes if personalise is None else items.codes[interactions["customer_id"].isin(personalise)]
    user_items = csr_matrix((mine["weight"].to_numpy(np.float32), (users.codes, item_codes)),
                            shape=(len(users.categories), len(items.categories)))
    with threadpool_limits(1, "blas"):  # implicit parallelises itself; nested BLAS threads slow it down
        als = implicit.als.AlternatingLeastSquares(
            factors=config.factors, regularization=config.regularization, alpha=config.alpha,
            iterations=config.iterations, random_state=config.seed, use_gpu=config.use_gpu,
            calculate_training_loss=False)
        als.fit(user_items, show_progress=False)
    if config.use_gpu:
        als = als.to_cpu()
    return Recommender(list(users.categories), list(items.categories), als.user_factors, als.item_factors,
                       user_items, popularity.to_numpy())


def load_folder(folder: Path) -> Any:
    """The recommender in a logged model's artifacts folder: two-stage when it holds one, else ALS."""
    from training.recommend.two_stage import TwoStageRecommender, is_two_stage

    folder = Path(folder)
    return TwoStageRecommender.load(folder) if is_two_stage(folder) else Recommender.load(folder / "recommender")


class RecommenderModel(mlflow.pyfunc.PythonModel):
    """MLflow pyfunc around a Recommender: rows [customer_id, k] -> recommended items, popularity when unknown."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        self.recommender = load_folder(Path(context.artifacts["recommender"]).parent)

    def predict(self, context: object, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        """Recommendations in long form [customer_id, rank, item_id, score, source]."""
        rows = []
        for customer_id, k in zip(model_input["customer_id"].astype(str), model_input["k"].astype(int)):
            known = self.recommender.knows_customer(customer_id)
            recs = self.recommender.recommend(customer_id, k) if known else self.recommender.popular(k)
            source = "personal" if known else "popular"
            rows += [(customer_id, rank, item, score, source) for rank, (item, score) in enumerate(recs, 1)]
        return pd.DataFrame(rows, columns=["customer_id", "rank", "item_id", "score", "source"])


def consenting_customers(settings: Settings, customers: pd.Series) -> set[str]:
    """Customers whose latest consent record allows personalisation (everyone when there is no consent table)."""
    return set(customers.astype(str)) - consent_refusals(settings, "personalization")


def holdout_matrices(settings: Settings, rec: Recommender, train: pd.DataFrame, start: pd.Timestamp,
                     end: pd.Timestamp) -> tuple[csr_matrix, pd.DataFrame]:
    """Holdout purchases in [start, end) by known customers of known items not already had in training."""
    events = read_table(settings.tables_dir, "events", columns=["customer_id", "item_id", "ts", "type"])
    bought = events[(events["type"] == "purchase") & (events["ts"] >= start) & (events["ts"] < end)]
    pairs = bought[["customer_id", "item_id"]].astype(str).drop_duplicates()
    seen = train[["customer_id", "item_id"]].astype(str).drop_duplicates()
    pairs = pairs.merge(seen, how="left", indicator=True).query("_merge == 'left_only'").drop(columns="_merge")
    pairs = pairs[pairs["customer_id"].map(rec.knows_customer) & pairs["item_id"].map(rec.knows_item)]
    pairs = pairs.sort_values(["customer_id", "item_id"], ignore_index=True)
    rows = pairs["customer_id"].map(rec._user_index).to_numpy()
    cols = pairs["item_id"].map(rec._item_index).to_numpy()
    test = csr_matrix((np.ones(len(pairs), np.float32), (rows, cols)), shape=rec.user_items.shape)
    return test, pairs


def _log_model(rec: Any) -> str:
    """Log the recommender (ALS or two-stage) as a pyfunc model and return its model URI (registered by the caller).

    Its artifacts are artifacts/recommender (ALS) and, for a two-stage pipeline, artifacts/two_stage, which
    `serving.champions.load` reads without the pyfunc wrapper."""
    with TemporaryDirectory() as tmp:
        two_stage = not isinstance(rec, Recommender)
        rec.save(Path(tmp) if two_stage else Path(tmp) / "recommender")
        parts = {"recommender": str(Path(tmp) / "recommender")}
        if two_stage:
            from training.recommend.two_stage import ARTIFACT

            parts[ARTIFACT] = str(Path(tmp) / ARTIFACT)
        example = pd.DataFrame({"customer_id": ["C-EXAMPLE-1", "C-EXAMPLE-2"], "k": [3, 5]})
        wrapper = RecommenderModel()
        wrapper.recommender = rec
        signature = infer_signature(example, wrapper.predict(None, example))
        info = mlflow.pyfunc.log_model(
            name="model", python_model=RecommenderModel(), artifacts=parts,
            signature=signature, input_example=example,
            pip_requirements=[f"implicit=={implicit.__version__}", f"numpy=={np.__version__}",
                              f"scipy=={scipy.__version__}", f"pandas=={pd.__version__}",
                              f"mlflow=={mlflow.__version__}", f"lightgbm=={lgb.__version__}"])
    return info.model_uri


def train_recommender(settings: Settings) -> tracking.TrainResult:
    """Evaluate ALS against popularity on a time-based holdout, then refit on all data and register it."""
    from features.pit import build

    cfg = settings.recommender
    end = build.data_end(settings)
    holdout_start = end - pd.Timedelta(days=cfg.holdout_days)
    with tracking.patron_run(settings, MODEL, cfg) as run:
        train = build.interactions(settings, holdout_start)
        rec = fit_recommender(train, cfg, consenting_customers(settings, train["customer_id"]))
        test, pairs = holdout_matrices(settings, rec, train, holdout_start, end)
        als_metrics = ranking_metrics(rec.model, rec.user_items, test, cfg.k)
        pop_model = _rank1_model(np.ones((rec.user_items.shape[0], 1)), rec.popularity[:, None])
        pop_metrics = ranking_metrics(pop_model, rec.user_items, test, cfg.k)
        if cfg.pipeline == "two_stage":  # the pipeline's metrics become the version's; ALS's are logged beside
            from training.recommend.two_stage import fit_two_stage

            mlflow.log_params(tracking.flat_params(settings.two_stage, "two_stage"))

            two = fit_two_stage(settings, rec, holdout_start)
            mlflow.log_metrics({f"als_{k}": v for k, v in als_metrics.items()})
            als_metrics = ranking_metrics(SimpleNamespace(recommend=two.recommend_batch), rec.user_items, test,
                                          cfg.k)
        eval_fp = fingerprint(pd.concat([train.assign(split="train"), pairs.assign(split="holdout", weight=1.0)],
                                        ignore_index=True))
        tracking.log_dataset_digest(train, "interactions_before_holdout", "training")
        tracking.log_dataset_digest(pairs, "holdout_purchases", "test")
        mlflow.log_params({"eval_train_cutoff": holdout_start.date().isoformat(),
                           "holdout_end": end.date().isoformat(), "final_fit_cutoff": end.date().isoformat()})
        mlflow.log_metrics(als_metrics)
        mlflow.log_metrics({f"popularity_{k}": v for k, v in pop_metrics.items()})
        shown = [f"recall_at_{cfg.k}", f"ndcg_at_{cfg.k}", f"map_at_{cfg.k}", "catalogue_coverage"]
        mlflow.log_figure(plots.metric_bars({"ALS": als_metrics, "popularity": pop_metrics}, shown,
                                            f"Holdout of the last {cfg.holdout_days} days"),
                          "plots/als_vs_popularity.png")

        # The registered model is refit on everything up to the end of the data with the evaluated params.
        full = build.interactions(settings, end)
        final = fit_recommender(full, cfg, consenting_customers(settings, full["customer_id"]))
        if cfg.pipeline == "two_stage":
            final = fit_two_stage(settings, final, end)
        tracking.log_dataset_digest(full, "interactions_all", "training")
        mlflow.set_tag("patron.final_fit", f"refit on all interactions before {end.date()} with the same params; "
                                           f"metrics are from the fit before {holdout_start.date()}")
        mlflow.set_tag(tracking.FINGERPRINT_TAG, eval_fp)
        model_uri = _log_model(final)
        tracking.fault_pause("model_logged")
        primary = f"ndcg_at_{cfg.k}"
        version = registry.register_version(settings, MODEL, model_uri, eval_fp, primary, als_metrics[primary])
        metrics = {**als_metrics, **{f"popularity_{k}": v for k, v in pop_metrics.items()}}
        return tracking.TrainResult(MODEL, run.info.run_id, version, metrics)
