"""`patron bench recsys`: tuned peers and Patron's two-stage recommender under the RecBole TO RS 8:1:1 protocol."""

from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any, Callable

import numpy as np
import optuna
import pandas as pd

from features.store import atomic_write_bytes, fingerprint, read_table, write_json
from patron.config import Settings, TwoStageConfig
from training.candidates import SOURCES
from training.peers import PEERS, make_peer
from training.ranker import ItemInfo, TwoStageResult, two_stage
from training.recsys_protocol import Split, evaluate, split_interactions, targets

PACKAGES = ("patron", "implicit", "lightgbm", "optuna", "numpy", "scipy", "pandas")


class BenchError(RuntimeError):
    """The benchmark's data cannot be prepared or read."""


def bench_workspace(settings: Settings, dataset: str, echo: Callable[[str], None] = print) -> Path:
    """The workspace the dataset lives in: WORKSPACE/bench/<name> (prepared when missing) or the given folder."""
    from features.ingest import ingest_source

    if dataset not in ("ml100k", "synthetic"):
        folder = Path(dataset)
        if not (folder / "tables").is_dir():
            raise BenchError(f"dataset: {dataset!r} is neither ml100k, synthetic nor an ingested workspace "
                             f"(no tables/ folder in it)")
        return folder
    folder = settings.workspace / "bench" / dataset
    bench = settings.model_copy(update={"workspace": folder})
    if read_table(bench.tables_dir, "events", columns=["event_id"]) is not None:
        return folder
    if dataset == "ml100k":
        from features.download import get_dataset

        main = get_dataset("ml100k", bench, echo=echo)
        echo(ingest_source(bench, "ml100k", path=main.parent).summary())
    else:
        from features.synth import generate

        echo(generate(bench).summary())
        echo(ingest_source(bench, "synthetic").summary())
    return folder


def load_interactions(workspace: Path) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Purchase events [customer_id, item_id, ts, unit_price] in stored order, and the products table."""
    tables = Path(workspace) / "tables"
    events = read_table(tables, "events", columns=["customer_id", "item_id", "ts", "type", "unit_price"])
    if events is None or events.empty:
        raise BenchError(f"dataset: no events table in {tables}")
    events = events[events["type"] == "purchase"].drop(columns="type").reset_index(drop=True)
    return events, read_table(tables, "products", columns=["item_id", "category"])


def item_info(split: Split, events: pd.DataFrame, products: pd.DataFrame | None) -> ItemInfo:
    """Category code and mean unit price per item code."""
    info = ItemInfo.empty(len(split.items))
    index = pd.Index(split.items)
    if products is not None:
        cats = products.astype(str).drop_duplicates("item_id").set_index("item_id")["category"].reindex(index)
        info.category = pd.Categorical(cats).codes.astype(np.int64)
    price = events.astype({"item_id": str}).groupby("item_id")["unit_price"].mean().reindex(index)
    info.price = price.to_numpy(np.float64)
    return info


@dataclass
class Row:
    """One line of the table."""

    model: str
    test: dict[str, float]
    valid_ndcg: float | None = None
    params: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    note: str = ""


def tune_peer(name: str, split: Split, trials: int, seed: int, k: int, threads: int, cold: np.ndarray
              ) -> tuple[dict[str, Any], float, int]:
    """Optuna TPE on validation NDCG@k (fit on train); returns best params, best value and trials run."""
    train = split.matrix(split.train)
    valid = targets(split, split.valid, train)

    def objective(trial: optuna.Trial) -> float:
        peer = make_peer(name, PEERS[name].space(trial), seed, threads).fit(train)
        return evaluate(peer.score, train, train, valid, k, cold)[f"ndcg@{k}"]

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=1 if not PEERS[name].space_text else trials)
    return dict(study.best_params), float(study.best_value), len(study.trials)


def run_bench(settings: Settings, dataset: str, trials: int | None = None, out: Path | None = None,
              echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Tune every peer, run the two-stage pipeline, evaluate all on test; write Markdown + JSON tables."""
    cfg, ts_cfg = settings.recsys_bench, settings.two_stage
    trials = trials or cfg.trials
    started = time.perf_counter()
    workspace = bench_workspace(settings, dataset, echo)
    events, products = load_interactions(workspace)
    split = split_interactions(events)
    cold = split.train_counts() < cfg.cold_max_train
    full = split.matrix(split.train, split.valid)
    test = targets(split, split.test, full)
    rows: list[Row] = []
    tuned: dict[str, dict[str, Any]] = {}
    for name in cfg.peers:
        t0 = time.perf_counter()
        params, best, n = tune_peer(name, split, trials, cfg.seed, cfg.k, cfg.threads, cold)
        tuned[name] = params
        peer = make_peer(name, params, cfg.seed, cfg.threads).fit(full)  # refit on train + validation
        rows.append(Row(name, evaluate(peer.score, full, full, test, cfg.k, cold), best, params,
                        time.perf_counter() - t0, f"{n} trials"))
        echo(f"{name}: valid ndcg@{cfg.k} {best:.4f}, test {rows[-1].test[f'ndcg@{cfg.k}']:.4f} "
             f"({rows[-1].seconds:.0f}s)")

    labels = targets(split, split.valid, split.matrix(split.train))
    history_full = pd.concat([split.train, split.valid], ignore_index=True)
    items = item_info(split, events, products)
    users_t = np.flatnonzero(np.diff(test.indptr))
    position = pd.Series(np.arange(len(users_t)), index=users_t)

    def rows_of(matrix: np.ndarray) -> Callable[[np.ndarray, Any], np.ndarray]:
        return lambda users, _history: matrix[position[users].to_numpy()]

    def pipeline(name: str, config: TwoStageConfig) -> tuple[Row, TwoStageResult]:
        t0 = time.perf_counter()
        result = two_stage(split.train, labels, history_full, test, split.shape, items, config, tuned, config.seed)
        row = Row(name, evaluate(rows_of(result.scorer_scores), full, full, test, cfg.k, cold), None,
                  {"sources": [s for s in SOURCES if getattr(config.sources, s)], "ranker": config.ranker,
                   "best_iteration": result.best_iteration}, time.perf_counter() - t0,
                  f"candidate recall valid {result.candidate_recall_valid:.3f} / test "
                  f"{result.candidate_recall_test:.3f}")
        echo(f"{name}: test ndcg@{cfg.k} {row.test[f'ndcg@{cfg.k}']:.4f} ({row.seconds:.0f}s)")
        return row, result

    main, result = pipeline("patron two-stage" + ("" if ts_cfg.ranker else " (no ranker)"), ts_cfg)
    rows.append(main)
    ablation = [Row(f"source alone: {s}", evaluate(rows_of(m), full, full, test, cfg.k, cold))
                for s, m in result.source_scores.items()]
    if cfg.ablation:
        enabled = main.params["sources"]
        variants = ([("without the ranker (rank fusion)", {"ranker": False})] if ts_cfg.ranker else []) + [
            (f"without {s}", {"sources": ts_cfg.sources.model_copy(update={s: False})})
            for s in enabled if len(enabled) > 1]
        ablation += [pipeline(n, ts_cfg.model_copy(update=u))[0] for n, u in variants]
    report = {
        "command": f"patron bench recsys --dataset {dataset} --trials {trials}",
        "dataset": dataset, "workspace": str(workspace),
        "data_fingerprint": fingerprint(events[["customer_id", "item_id", "ts"]].astype(str)),
        "data": {"customers": int(split.shape[0]), "items": int(split.shape[1]), "interactions": int(len(events)),
                 "train": len(split.train), "valid": len(split.valid), "test": len(split.test),
                 "cold_customers_in_test": int(rows[0].test["cold_users"])},
        "protocol": "RecBole TO RS 8:1:1 per customer (ties in time keep the stored order); full ranking over all "
                    "items; items seen in train (validation) / train+validation (test) excluded; peers tuned on "
                    "validation with a model fit on train, then refit on train+validation with the best params "
                    "and scored on test; two-stage: ranker trained on validation labels over candidates from "
                    "sources fit on train, sources refit on train+validation for test",
        "k": cfg.k, "trials_per_peer": trials, "seed": cfg.seed, "sampler": "optuna TPESampler(seed)",
        "search_spaces": {n: PEERS[n].space_text for n in cfg.peers},
        "two_stage": ts_cfg.model_dump(mode="json"),
        "two_stage_feature_importance": result.feature_importance,
        "versions": {p: version(p) for p in PACKAGES} | {"python": platform.python_version()},
        "seconds": round(time.perf_counter() - started, 1),
        "results": [r.__dict__ for r in rows], "ablation": [r.__dict__ for r in ablation],
    }
    target = Path(out) if out else settings.workspace / "bench" / Path(dataset).name
    stem = "recsys_bench"
    write_json(json.loads(json.dumps(report, default=float)), target / f"{stem}.json")
    atomic_write_bytes(target / f"{stem}.md", markdown(report).encode())
    report["written"] = [str(target / f"{stem}.json"), str(target / f"{stem}.md")]
    return report


def _fmt(v: float | None) -> str:
    return "-" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.4f}"


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown tables."""
    k = report["k"]
    head = (f"| model | valid NDCG@{k} | Recall@{k} | NDCG@{k} | MRR@{k} | Hit@{k} | coverage | cold Recall@{k} "
            f"| cold NDCG@{k} | s | notes |\n|---|---|---|---|---|---|---|---|---|---|---|\n")

    def line(r: dict[str, Any]) -> str:
        t = r["test"]
        return (f"| {r['model']} | {_fmt(r['valid_ndcg'])} | {_fmt(t[f'recall@{k}'])} | {_fmt(t[f'ndcg@{k}'])} "
                f"| {_fmt(t[f'mrr@{k}'])} | {_fmt(t[f'hit@{k}'])} | {_fmt(t['coverage'])} "
                f"| {_fmt(t[f'cold_recall@{k}'])} | {_fmt(t[f'cold_ndcg@{k}'])} | {r['seconds']:.0f} "
                f"| {r['note']} |\n")

    params = "".join(f"- {r['model']}: `{json.dumps(r['params'])}`\n" for r in report["results"])
    spaces = "".join(f"- {n}: {s or 'no parameters (1 trial)'}\n" for n, s in report["search_spaces"].items())
    d = report["data"]
    return (f"# Recommender benchmark: {report['dataset']}\n\n`{report['command']}` ({report['seconds']:.0f} s)\n\n"
            f"Data: {d['customers']} customers, {d['items']} items, {d['interactions']} interactions "
            f"(train {d['train']}, valid {d['valid']}, test {d['test']}); cold customers among test customers: "
            f"{d['cold_customers_in_test']}; fingerprint `{report['data_fingerprint']}`.\n\n"
            f"Protocol: {report['protocol']}. Metrics on test @{k}.\n\n" + head
            + "".join(line(r) for r in report["results"])
            + "\n## Ablation (test; each source ranks on its own score)\n\n" + head
            + "".join(line(r) for r in report["ablation"])
            + f"\n## Best parameters\n\n{params}\n## Search spaces ({report['trials_per_peer']} trials each, "
            f"{report['sampler']}, seed {report['seed']})\n\n{spaces}\n"
            f"## Versions\n\n`{json.dumps(report['versions'])}`\n")
