"""`patron bench recsys`: tuned peers and Patron's two-stage recommender under the RecBole TO RS 8:1:1 protocol."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.recsys_oracle import ORACLE_NOTE, ORACLE_ROW, oracle_scorer
from benchmarks.recsys_patron import shipped_scores
from benchmarks.recsys_peers import BROWSING_WEIGHT_RANGE, Row, tune_peer
from benchmarks.report import BenchReport, Table, package_versions
from features.tables.store import fingerprint, read_table
from patron import progress
from patron.config import Settings, TwoStageConfig
from training.mlops.metrics import dense_scorer, evaluate
from training.mlops.splits import Split, split_interactions, targets
from training.recommend.candidates import PEER_SOURCES, browsing_before, with_browsing
from training.recommend.item_data import event_codes, item_info, read_products
from training.recommend.peers import PEERS, make_peer
from training.recommend.two_stage import source_peer_params
from training.tune.two_stage_runs import LastRows, TwoStageResult, rank_with_seeds, two_stage_rows
from training.tune.two_stage_search import (
    ELIMINATION,
    RESCORE,
    TWO_STAGE_SPACE,
    enabled_sources,
    tune_two_stage,
    without_source,
)

PACKAGES = ("patron", "implicit", "lightgbm", "optuna", "numpy", "scipy", "pandas")
PROTOCOL = (
    "RecBole TO RS 8:1:1 per customer (ties in time keep the stored order); full ranking over all items; "
    "items seen in train (validation) / train+validation (test) excluded; peers tuned on validation with a "
    "model fit on train, then refit on train+validation with the best params and scored on test; two-stage: "
    "ranker trained on validation labels over candidates from sources fit on train, sources refit on "
    "train+validation for test; its sources, candidate count and ranker settings tuned with the peers' trial "
    "budget on validation NDCG, the pipeline shifted one period earlier (ranker labels: each customer's last "
    "validation-sized slice of train; sources fit before it), so test is read once, by the chosen config; "
    "browsing events (where the data has them) reach a fit only before the day of each customer's last "
    "purchase in it"
)


class BenchError(RuntimeError):
    """The benchmark's data cannot be prepared or read."""


def bench_workspace(settings: Settings, dataset: str, echo: Callable[[str], None] = print) -> Path:
    """The workspace the dataset lives in: WORKSPACE/bench/<name> (prepared when missing) or the given folder."""
    from features.ingest.pipeline import ingest_source

    if dataset not in ("ml100k", "synthetic"):
        folder = Path(dataset)
        if not (folder / "tables").is_dir():
            raise BenchError(
                f"dataset: {dataset!r} is neither ml100k, synthetic nor an ingested workspace (no tables/ folder in it)"
            )
        return folder
    folder = settings.workspace / "bench" / dataset
    bench = settings.model_copy(update={"workspace": folder})
    if read_table(bench.tables_dir, "events", columns=["event_id"]) is not None:
        return folder
    if dataset == "ml100k":
        from features.ingest.download import get_dataset

        main = get_dataset("ml100k", bench, echo=echo)
        echo(ingest_source(bench, "ml100k", path=main.parent).summary())
    else:
        from features.synthetic.generate import generate

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
    return events, read_products(tables)


def load_browsing(workspace: Path, split: Split, types: Sequence[str]) -> pd.DataFrame | None:
    """Browsing events of the given types as codes [u, i, ts] of the split's customers and items (None if none)."""
    if not types:
        return None
    frame = event_codes(Path(workspace) / "tables", types, split.customers.astype(str), split.items.astype(str))
    return frame if len(frame) else None


def run_bench(
    settings: Settings,
    dataset: str,
    trials: int | None = None,
    out: Path | None = None,
    echo: Callable[[str], None] = print,
) -> tuple[BenchReport, list[Path]]:
    """Tune every peer, run the two-stage pipeline, evaluate all on test; write recsys_bench.md/.json (in `out`,
    default WORKSPACE/bench/<dataset>) and log them as an MLflow run of the workspace."""
    cfg, ts_cfg, seed = settings.recsys_bench, settings.two_stage, settings.seed
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
    for name in progress.bar(cfg.peers, desc="peers", unit="model"):
        t0 = time.perf_counter()
        params, best, n = tune_peer(name, split, trials, seed, cfg.k, cfg.threads, cold)
        tuned[name] = params
        peer = make_peer(name, params, seed, cfg.threads).fit(full)  # refit on train + validation
        rows.append(
            Row(
                name,
                evaluate(peer.score, full, full, test, cfg.k, cold),
                best,
                params,
                time.perf_counter() - t0,
                f"{n} trials",
            )
        )
        echo(
            f"{name}: valid ndcg@{cfg.k} {best:.4f}, test {rows[-1].test[f'ndcg@{cfg.k}']:.4f} "
            f"({rows[-1].seconds:.0f}s)"
        )

    labels = targets(split, split.valid, split.matrix(split.train))
    history_full = pd.concat([split.train, split.valid], ignore_index=True)
    items = item_info(split.items, events, products)
    browsing = load_browsing(workspace, split, ts_cfg.browsing_events)
    for name in cfg.browsing_peers if browsing is not None else []:  # the same events Patron reads, given to a peer
        t0 = time.perf_counter()
        params, best, n = tune_peer(name, split, trials, seed, cfg.k, cfg.threads, cold, browsing)
        fit_on = with_browsing(full, browsing_before(browsing, history_full, split.shape), params["browsing_weight"])
        peer = make_peer(name, {p: v for p, v in params.items() if p != "browsing_weight"}, seed, cfg.threads).fit(
            fit_on
        )
        rows.append(
            Row(
                f"{name} + browsing ({', '.join(ts_cfg.browsing_events)})",
                evaluate(peer.score, fit_on, full, test, cfg.k, cold),
                best,
                params,
                time.perf_counter() - t0,
                f"{n} trials; browsed items before each customer's last purchase day, weight tuned",
            )
        )
        echo(f"{rows[-1].model}: valid ndcg@{cfg.k} {best:.4f}, test {rows[-1].test[f'ndcg@{cfg.k}']:.4f}")

    def rows_of(matrix: np.ndarray) -> Callable[[np.ndarray, Any], np.ndarray]:
        return dense_scorer(matrix, test)

    # the pipeline's peer sources take the peers' tuned params: the settings `patron train recommender` would ship
    ts_cfg = ts_cfg.model_copy(update={"peers": {p: tuned[p] for p in PEER_SOURCES.values() if p in tuned}})
    peer_params = source_peer_params(settings.model_copy(update={"two_stage": ts_cfg}))
    t0 = time.perf_counter()
    search = tune_two_stage(
        split,
        items,
        ts_cfg,
        peer_params,
        trials,
        seed,
        cfg.k,
        cold,
        settings.sequence,
        browsing,
        cfg.elimination_margin,
        cfg.rescore_top,
        cfg.elimination_seeds,
        cfg.elimination_z,
        cfg.elimination_rechecks,
        cfg.elimination_ranker,
    )
    ts_cfg = search.config
    tuning_s = time.perf_counter() - t0
    for line in search.rescored:
        echo(
            f"rescored trial {line['trial']}: valid ndcg@{cfg.k} {line['valid_ndcg']:.4f}, fresh seed "
            f"{line['valid_ndcg_fresh_seed']:.4f}"
        )
    for step in search.elimination:
        echo(
            f"elimination{' re-check' if step.get('recheck') else ''}: without {step['source']} valid "
            f"ndcg@{cfg.k} {step['valid_ndcg_without']:.4f} vs {step['valid_ndcg_with']:.4f} "
            f"(margin {step['margin']:.4f}): {'dropped' if step['dropped'] else 'kept'}"
        )
    echo(
        f"two-stage tuning: valid ndcg@{cfg.k} {search.valid_ndcg:.4f} ({search.tpe_trials} TPE trials + "
        f"{search.runs - search.tpe_trials} rescoring and elimination runs, {tuning_s:.0f}s)"
    )

    test_rows = LastRows(
        lambda config: two_stage_rows(
            split.train,
            labels,
            history_full,
            test,
            split.shape,
            items,
            config,
            peer_params,
            config.seed,
            settings.sequence,
            browsing if config.browsing_events else None,
        )
    )

    def pipeline(name: str, config: TwoStageConfig, n_seeds: int = 1) -> tuple[Row, Row | None, TwoStageResult]:
        """The pipeline's row on its own ranker seed and, with `n_seeds` > 1, the mean over seeds seed, seed + 1,
        ... (rankers fitted on the same rows); the first seed's result."""
        t0 = time.perf_counter()
        results = rank_with_seeds(test_rows(config), config, [config.seed + j for j in range(n_seeds)])
        seconds = (time.perf_counter() - t0) / len(results)  # per seed, the rows' cost shared
        runs = [evaluate(rows_of(r.scorer_scores), full, full, test, cfg.k, cold) for r in results]
        result = results[0]
        params = {
            "sources": enabled_sources(config),
            "ranker": config.ranker,
            "candidates_per_source": config.candidates_per_source,
            "ranker_params": config.ranker_params if config.ranker else None,
            "best_iteration": result.best_iteration,
        }
        row = Row(
            name,
            runs[0],
            None,
            params,
            seconds,
            f"candidate recall valid {result.candidate_recall_valid:.3f} / test {result.candidate_recall_test:.3f}",
        )
        echo(f"{name}: test ndcg@{cfg.k} {row.test[f'ndcg@{cfg.k}']:.4f} ({row.seconds:.0f}s)")
        if len(runs) == 1:
            return row, None, result
        mean = Row(
            f"{name}, mean of {len(runs)} ranker seeds",
            {m: float(np.mean([r[m] for r in runs])) for m in runs[0]},
            None,
            params,
            seconds * len(runs),
            f"NDCG@{cfg.k} per seed {config.seed}..{config.seed + len(runs) - 1}: "
            + ", ".join(f"{r[f'ndcg@{cfg.k}']:.4f}" for r in runs),
        )
        echo(f"{mean.model}: test ndcg@{cfg.k} {mean.test[f'ndcg@{cfg.k}']:.4f}")
        return row, mean, result

    # a source's gain is about as large as one run's ranker noise: the pipeline and each removal are also averaged
    # over the same ranker seeds
    n_seeds = cfg.ablation_seeds if cfg.ablation and ts_cfg.ranker else 1
    main, main_mean, result = pipeline("patron two-stage", ts_cfg, n_seeds)
    # the row itself: what `patron train recommender` ships with these settings, through its own code path
    shipped = settings.model_copy(update={"two_stage": ts_cfg})
    users_t = np.flatnonzero(np.diff(test.indptr))
    t0 = time.perf_counter()
    scores = shipped_scores(shipped, split.train, labels, history_full, users_t, items, browsing)
    main.test = evaluate(rows_of(scores), full, full, test, cfg.k, cold)
    main.valid_ndcg, main.seconds = search.valid_ndcg, time.perf_counter() - t0 + tuning_s
    echo(f"patron two-stage as shipped: test ndcg@{cfg.k} {main.test[f'ndcg@{cfg.k}']:.4f}")
    main.note = (
        f"{search.tpe_trials} TPE trials + {search.runs - search.tpe_trials} rescoring and elimination runs; "
        f"{'' if ts_cfg.ranker else 'no ranker: rank fusion of the kept sources; '}{main.note}"
    )
    rows.append(main)
    truth = oracle_scorer(settings.model_copy(update={"workspace": workspace}).ground_truth_dir, split)
    if truth is not None:
        rows.append(Row(ORACLE_ROW, evaluate(truth, full, full, test, cfg.k, cold), note=ORACLE_NOTE))
    ablation = [
        Row(f"source alone: {s}", evaluate(rows_of(m), full, full, test, cfg.k, cold))
        for s, m in result.source_scores.items()
    ]
    if cfg.ablation:
        enabled = main.params["sources"]
        if not ts_cfg.ranker:  # the search dropped it: show what it would have given (on the pipeline's rows)
            alone, mean, _ = pipeline(
                "with the LightGBM ranker", ts_cfg.model_copy(update={"ranker": True}), cfg.ablation_seeds
            )
            ablation.append(mean or alone)
        variants = ([("without the ranker (rank fusion)", {"ranker": False})] if ts_cfg.ranker else []) + (
            [("without browsing events", {"browsing_events": []})] if browsing is not None else []
        )
        ablation += [pipeline(n, ts_cfg.model_copy(update=u))[0] for n, u in variants]
        ablation += [main_mean] if main_mean is not None else []
        for source in enabled if len(enabled) > 1 else []:
            alone, mean, _ = pipeline(f"without {source}", without_source(ts_cfg, source), n_seeds)
            ablation.append(mean or alone)
        if not ts_cfg.sources.sequence:  # switched off: show what switching the sequence model on would give
            with_seq, _, seq_result = pipeline(
                "with the sequence model",
                ts_cfg.model_copy(update={"sources": ts_cfg.sources.model_copy(update={"sequence": True})}),
            )
            ablation += [
                Row(
                    "source alone: sequence",
                    evaluate(rows_of(seq_result.source_scores["sequence"]), full, full, test, cfg.k, cold),
                ),
                with_seq,
            ]
    k = cfg.k
    columns = [
        "valid_ndcg",
        *(f"{m}@{k}" for m in ("recall", "ndcg", "map", "mrr", "hit")),
        "coverage",
        f"cold_recall@{k}",
        f"cold_ndcg@{k}",
        "seconds",
        "note",
    ]
    browsing_range = "{:g}..{:g} log".format(*BROWSING_WEIGHT_RANGE)
    spaces = (
        {n: PEERS[n].space_text for n in cfg.peers}
        | {"patron two-stage": TWO_STAGE_SPACE | {"rescoring": RESCORE, "elimination": ELIMINATION}}
        | {
            f"{n} + browsing": {**PEERS[n].space_text, "browsing_weight": browsing_range}
            for n in (cfg.browsing_peers if browsing is not None else [])
        }
    )
    report = BenchReport(
        name="Recommender benchmark",
        dataset=dataset,
        protocol={
            "protocol": PROTOCOL,
            "k": k,
            "trials": trials,
            "sampler": "optuna TPESampler(seed)",
            "workspace": str(workspace),
            "customers": int(split.shape[0]),
            "items": int(split.shape[1]),
            "interactions": int(len(events)),
            "train": len(split.train),
            "valid": len(split.valid),
            "test": len(split.test),
            "cold_customers_in_test": int(rows[0].test["cold_users"]),
        },
        columns=columns,
        rows=[r.as_row() for r in rows],
        fingerprint=fingerprint(events[["customer_id", "item_id", "ts"]].astype(str)),
        seeds={"bench": seed, "two_stage": ts_cfg.seed},
        seconds=time.perf_counter() - started,
        notes=[
            f"metrics on test @{k}; valid_ndcg: the validation NDCG@{k} the tuning chose on",
            *(f"best parameters of {r.model}: `{json.dumps(r.params)}`" for r in rows),
            *(f"search space of {n} ({trials} trials): {s or 'no parameters (1 trial)'}" for n, s in spaces.items()),
        ],
        tables={
            "ablation": Table(
                "Ablation (test; each source ranks on its own score)", columns, [r.as_row() for r in ablation]
            ),
            "rescored": Table(
                "Best TPE trials rescored with a fresh ranker seed",
                ["valid_ndcg", "valid_ndcg_fresh_seed", "mean"],
                search.rescored,
                label="trial",
            ),
            "elimination": Table(
                "Source elimination on validation (after the TPE trials), weakest first",
                ["gain_share", "valid_ndcg_with", "valid_ndcg_without", "margin", "dropped", "recheck"],
                search.elimination,
                label="source",
            ),
        },
        details={
            "search_spaces": spaces,
            "browsing_events": ts_cfg.browsing_events if browsing is not None else [],
            "two_stage": ts_cfg.model_dump(mode="json"),
            "two_stage_feature_importance": result.feature_importance,
        },
        command=f"patron bench recsys --dataset {dataset} --trials {trials}",
        versions=package_versions(PACKAGES),
    )
    target = Path(out) if out else settings.workspace / "bench" / Path(dataset).name
    return report, report.write(target, "recsys_bench", settings)
