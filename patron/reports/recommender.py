"""`patron report recommender`: metrics@K by segment and cold slice, coverage, popularity bias, example lists."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from patron.config import RecommenderConfig, Settings
from patron.reports.html import HtmlReport, save_report
from patron.reports.runs import ModelRun, champion_run
from training.mlops.metrics import metrics_per_user

RECOMMENDER_FIGURES = {
    "metrics-by-segment": "NDCG@K by lifecycle segment and cold slice",
    "popularity-bias": "Popularity of recommended vs purchased items",
}


@dataclass
class RecommenderEvaluation:
    """A version's parameters refit before the holdout, scored per customer on the holdout purchases."""

    run: ModelRun
    k: int
    per_user: pd.DataFrame  # customer_id, recall, ndcg, mrr, hit, train_items, cold, lifecycle_stage
    recommended: np.ndarray  # (customers, k) item positions
    relevant_items: np.ndarray  # item positions of the holdout purchases
    popularity: np.ndarray  # per item position: training interaction weight
    n_items: int
    cold_max_train: int


def run_config(settings: Settings, run: ModelRun) -> RecommenderConfig:
    """The recommender section the run was trained with (its `recommender.*` params over the current config)."""
    logged = {
        k.split(".", 1)[1]: v for k, v in run.params.items() if k.startswith("recommender.") and k.count(".") == 1
    }
    known = {k: v for k, v in logged.items() if k in RecommenderConfig.model_fields}
    return RecommenderConfig.model_validate({**settings.recommender.model_dump(), **known})


def evaluate_recommender_run(settings: Settings, run: ModelRun) -> RecommenderEvaluation:
    """Refit the run's configuration on interactions before the holdout and score each holdout customer @k."""
    from features.pit import build
    from features.pit.segments import customer_segments
    from training.recommend.als import fit_recommender
    from training.recommend.train import consenting_customers, holdout_matrices

    cfg = run_config(settings, run)
    end = build.data_end(settings)
    start = end - pd.Timedelta(days=cfg.holdout_days)
    train = build.interactions(settings, start)
    rec = fit_recommender(train, cfg, consenting_customers(settings, train["customer_id"]))
    test, _ = holdout_matrices(settings, rec, train, start, end)
    users = np.flatnonzero(np.diff(test.indptr))
    if len(users) == 0:
        raise ValueError("no evaluation customers: the holdout holds no new purchases by known customers")
    ids, _ = rec.model.recommend(users, rec.user_items[users], N=cfg.k, filter_already_liked_items=True)
    scores = metrics_per_user(ids, test[users], cfg.k)
    customers = rec.customer_ids[users].astype(str)
    train_items = np.diff(rec.user_items.indptr)[users]
    seg = customer_segments(build.customer_features(settings, start), None, settings.segments)
    stage = seg.set_index("customer_id")["lifecycle_stage"].reindex(customers).fillna("unknown").to_numpy()
    per_user = pd.DataFrame(
        {
            "customer_id": customers,
            **scores,
            "train_items": train_items,
            "cold": train_items < settings.recsys_bench.cold_max_train,
            "lifecycle_stage": stage,
        }
    )
    return RecommenderEvaluation(
        run,
        cfg.k,
        per_user,
        ids,
        test[users].indices,
        rec.popularity,
        len(rec.item_ids),
        settings.recsys_bench.cold_max_train,
    )


def metrics_by_slice(ev: RecommenderEvaluation) -> pd.DataFrame:
    """Mean recall, NDCG, MRR and hit @k for everyone, each lifecycle stage and the cold / warm slices."""
    k, df = ev.k, ev.per_user
    slices = {
        "all": df,
        **{f"lifecycle_stage={s}": g for s, g in df.groupby("lifecycle_stage")},
        f"cold (< {ev.cold_max_train} training items)": df[df["cold"]],
        "warm": df[~df["cold"]],
    }
    rows = [
        {"slice": name, "customers": len(g), **{f"{m}@{k}": g[m].mean() for m in ("recall", "ndcg", "mrr", "hit")}}
        for name, g in slices.items()
        if len(g)
    ]
    return pd.DataFrame(rows)


def popularity_bias(ev: RecommenderEvaluation) -> dict[str, float]:
    """Catalogue coverage, Gini of recommendation counts and mean popularity percentile, recommended vs bought."""
    pct = pd.Series(ev.popularity).rank(pct=True).to_numpy()
    counts = np.sort(np.bincount(ev.recommended[ev.recommended >= 0].ravel(), minlength=ev.n_items))
    cum = np.cumsum(counts) / max(counts.sum(), 1)
    gini = 1 - 2 * cum.mean() + 1 / len(counts)
    return {
        "catalogue_coverage": len(np.unique(ev.recommended[ev.recommended >= 0])) / ev.n_items,
        "gini_of_recommendations": float(gini),
        "mean_popularity_percentile_recommended": float(pct[ev.recommended[ev.recommended >= 0]].mean()),
        "mean_popularity_percentile_bought": float(pct[ev.relevant_items].mean()),
    }


def _bars(table: pd.DataFrame, column: str) -> Figure:
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    bars = ax.bar(table["slice"], table[column])
    ax.bar_label(bars, fmt="%.3f", fontsize=8)
    ax.set(ylabel=column, title=f"{column} by slice (holdout)")
    ax.tick_params(axis="x", labelrotation=30)
    fig.tight_layout()
    return fig


def _popularity_figure(ev: RecommenderEvaluation) -> Figure:
    pct = pd.Series(ev.popularity).rank(pct=True).to_numpy()
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    bins = np.linspace(0, 1, 11)
    ax.hist(pct[ev.recommended[ev.recommended >= 0].ravel()], bins=bins, alpha=0.6, density=True, label="recommended")
    ax.hist(pct[ev.relevant_items], bins=bins, alpha=0.6, density=True, label="bought in the holdout")
    ax.set(xlabel="item popularity percentile (training weight)", ylabel="density", title="Popularity bias")
    ax.legend()
    fig.tight_layout()
    return fig


def customer_examples(
    settings: Settings, recommender: object, customer_ids: list[str], k: int, history: int
) -> pd.DataFrame:
    """Each customer's latest purchases beside the recommender's list (purchased items left out, as /recommend
    does): customer_id, kind, rank, item_id, category."""
    from features.tables.store import read_table

    events = read_table(settings.tables_dir, "events", columns=["customer_id", "item_id", "ts", "type"])
    products = read_table(settings.tables_dir, "products", columns=["item_id", "category"])
    category = products.astype(str).set_index("item_id")["category"]
    bought = events[(events["type"] == "purchase") & events["customer_id"].isin(customer_ids)]
    bought = bought.sort_values("ts", ascending=False).drop_duplicates(["customer_id", "item_id"])
    rows = []
    for cid in customer_ids:
        past = bought.loc[bought["customer_id"] == cid, "item_id"].astype(str)
        rows += [(cid, "bought", n, i) for n, i in enumerate(past.head(history), 1)]
        recs = recommender.recommend(cid, k, exclude=set(past))  # as /recommend: nothing already bought
        rows += [(cid, "recommended", n, i) for n, (i, _) in enumerate(recs, 1)]
    out = pd.DataFrame(rows, columns=["customer_id", "kind", "rank", "item_id"])
    return out.assign(category=out["item_id"].map(category))


def example_customers(settings: Settings, recommender: object, count: int) -> list[str]:
    """`count` customers the model personalises for, drawn with the report seed among those with purchases."""
    ids = sorted(c for c in recommender.customer_ids.astype(str))
    rng = np.random.default_rng(settings.seed)
    return sorted(rng.choice(ids, size=min(count, len(ids)), replace=False).tolist())


def recommender_report(settings: Settings, run_id: str | None = None, out: Path | None = None) -> Path:
    """Write the recommender report of a run (default: the champion's) and log it to that run; returns the file."""
    import mlflow.pyfunc

    run = champion_run(settings, "recommender", run_id)
    ev = evaluate_recommender_run(settings, run)
    k = ev.k
    report = HtmlReport(
        "Recommender report",
        {
            "model": f"{run.name} v{run.version}",
            "run": run.run_id,
            "holdout customers": str(len(ev.per_user)),
            "K": str(k),
        },
    )
    report.heading(f"Metrics@{k} by segment and cold slice", "metrics")
    report.paragraph(
        "The version's parameters refit on interactions before the holdout (as training evaluates); "
        "every holdout customer's top-K list scored against the items they bought in the holdout."
    )
    table = metrics_by_slice(ev)
    report.table(table, "metrics-table")
    report.figure(_bars(table, f"ndcg@{k}"), "metrics-by-segment", RECOMMENDER_FIGURES["metrics-by-segment"])
    report.heading("Coverage and popularity bias", "coverage")
    report.table(pd.DataFrame([popularity_bias(ev)]), "coverage-table")
    report.figure(_popularity_figure(ev), "popularity-bias", RECOMMENDER_FIGURES["popularity-bias"])
    report.heading("Example recommendations", "examples")
    model = mlflow.pyfunc.load_model(f"models:/{run.name}/{run.version}").unwrap_python_model().recommender
    who = example_customers(settings, model, settings.reports.example_customers)
    report.table(customer_examples(settings, model, who, k, settings.reports.history_items), "examples-table")
    return save_report(settings, report, "recommender", run.run_id, out)
