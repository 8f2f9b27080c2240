"""`patron recommend batch`: every customer's recommendations, answered as the service would, to one file."""

from __future__ import annotations

import multiprocessing
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from features.pit.build import customer_features, data_end
from features.pit.repurchase import RepurchaseCycles
from features.pit.segments import LIFECYCLE_STAGES, lifecycle_stages
from features.tables.export import write_csv_or_parquet
from features.tables.store import read_table
from patron.config import Settings
from serving.answers import recommendations
from serving.answers.rules import RuleBook
from serving.champions.load import load_recommender_champion
from serving.online.backend import open_store
from serving.online.state import OnlineState

COLUMNS = ["customer_id", "rank", "item_id", "score", "reason", "source", "personalisation_consent", "model_version"]
# What each worker process answers with: set in the parent, inherited by forked workers.
_CONTEXT: dict[str, Any] = {}


@dataclass(frozen=True)
class BatchReport:
    """What a batch recommendation run wrote, and how fast."""

    path: Path
    customers: int
    rows: int
    without_consent: int
    model_version: str
    workers: int
    seconds: float

    @property
    def customers_per_s(self) -> float:
        return self.customers / self.seconds if self.seconds > 0 else float("inf")

    def summary(self) -> str:
        return (
            f"{self.rows} recommendations for {self.customers} customers ({self.without_consent} without "
            f"personalisation consent, given popular items) with patron-recommender v{self.model_version} "
            f"in {self.seconds:.1f}s on {self.workers} worker(s): {self.customers_per_s:.0f} customers/s "
            f"-> {self.path}"
        )


def read_customer_ids(path: Path) -> list[str]:
    """Customer ids from a CSV/Parquet file with a customer_id column, or a text file of one id per line."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"customers: {path} does not exist")
    if path.suffix.lower() == ".parquet":
        frame = pd.read_parquet(path)
    else:
        frame = pd.read_csv(path, dtype=str)
        if "customer_id" not in frame.columns:
            frame = pd.read_csv(path, dtype=str, header=None, names=["customer_id"])
    if "customer_id" not in frame.columns:
        raise ValueError(f"customers: {path} has no customer_id column")
    ids = frame["customer_id"].dropna().astype(str).str.strip()
    return list(dict.fromkeys(ids[ids != ""]))


def all_customer_ids(settings: Settings) -> list[str]:
    """Every customer of the customers table (else of the events table), sorted."""
    customers = read_table(settings.tables_dir, "customers", columns=["customer_id"])
    if customers is None:
        customers = read_table(settings.tables_dir, "events", columns=["customer_id"])
    if customers is None:
        raise FileNotFoundError(f"{settings.tables_dir} has no customers or events table: ingest data first")
    return sorted(customers["customer_id"].astype(str).unique())


def segment_customer_ids(settings: Settings, stage: str) -> list[str]:
    """Customers in a lifecycle stage (features/pit/segments.py) at the end of the data, sorted."""
    if stage not in LIFECYCLE_STAGES:
        raise ValueError(f"segment: unknown lifecycle stage {stage!r}; expected one of {list(LIFECYCLE_STAGES)}")
    features = customer_features(settings, data_end(settings))
    chosen = features.loc[lifecycle_stages(features, settings.segments).to_numpy() == stage, "customer_id"]
    return sorted(chosen.astype(str))


def _init_worker() -> None:
    """Pool initializer: each process its own online-store connection (never one shared across fork)."""
    _CONTEXT["state"].store = open_store(_CONTEXT["settings"])
    # One customer's scores are one small product: BLAS threads would only contend with the other workers.
    threadpool_limits(1, "blas")


def _recommend_chunk(customers: list[str]) -> list[tuple]:
    """Rows of COLUMNS for a chunk of customers, from the context of this process."""
    ctx = _CONTEXT
    rows = []
    for customer in customers:
        answer = recommendations.recommend(
            ctx["recommender"],
            ctx["state"],
            customer,
            ctx["k"],
            True,
            None,
            None,
            ctx["rules"],
            ctx["settings"],
            ctx["cycles"],
        )
        consent = "no_personalisation_consent" not in answer.rules_applied
        rows += [
            (customer, rank, item["item_id"], item["score"], item["reason"], answer.source, consent, ctx["version"])
            for rank, item in enumerate(answer.items, 1)
        ]
    return rows


def _chunks(ids: list[str], size: int) -> list[list[str]]:
    return [ids[i : i + size] for i in range(0, len(ids), size)]


def recommend_batch(
    settings: Settings,
    out: Path,
    k: int | None = None,
    customers: list[str] | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> BatchReport:
    """Recommendations for the customers (default: all) with the champion, the rules and consent; atomic write."""
    cfg = settings.batch_recommend
    out = Path(out)
    if out.suffix.lower() not in {".csv", ".parquet"}:
        raise ValueError(f"out: {out} must end in .csv or .parquet")
    k = k or cfg.k
    if not 1 <= k <= settings.serving.max_k:
        raise ValueError(f"k: must be between 1 and {settings.serving.max_k}, got {k}")
    workers = workers or cfg.workers or os.cpu_count() or 1
    if workers < 1:
        raise ValueError(f"workers: must be at least 1, got {workers}")
    ids = all_customer_ids(settings) if customers is None else list(dict.fromkeys(customers))
    recommender, version = load_recommender_champion(settings)
    # No customer features needed here: recommendations read the catalogue, purchases, consent and stock only.
    state = OnlineState.from_workspace(settings, pd.DataFrame({"customer_id": pd.Series([], dtype=str)}))
    _CONTEXT.update(
        recommender=recommender,
        version=version,
        state=state,
        k=k,
        settings=settings,
        rules=RuleBook(settings).current(),
        cycles=RepurchaseCycles.from_workspace(settings),
    )
    chunks = _chunks(ids, cfg.chunk_customers)
    started = time.perf_counter()
    rows: list[tuple] = []
    try:
        with tqdm(total=len(ids), desc="recommendations", unit="customer", disable=not progress) as bar:
            if workers == 1:
                state.store = open_store(settings)
                with threadpool_limits(1, "blas"):
                    for chunk in chunks:
                        rows += _recommend_chunk(chunk)
                        bar.update(len(chunk))
            else:
                with multiprocessing.get_context("fork").Pool(workers, initializer=_init_worker) as pool:
                    for chunk, chunk_rows in zip(chunks, pool.imap(_recommend_chunk, chunks)):
                        rows += chunk_rows
                        bar.update(len(chunk))
        seconds = time.perf_counter() - started
    finally:
        if state.store is not None:
            state.store.close()
        _CONTEXT.clear()
    frame = pd.DataFrame(rows, columns=COLUMNS)
    write_csv_or_parquet(frame, out)
    refused = int((~frame.drop_duplicates("customer_id")["personalisation_consent"]).sum()) if len(frame) else 0
    return BatchReport(
        path=out,
        customers=len(ids),
        rows=len(frame),
        without_consent=refused,
        model_version=version,
        workers=workers,
        seconds=seconds,
    )
