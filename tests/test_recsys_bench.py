"""The recommender benchmark: RecBole TO RS 8:1:1 split, full-ranking metrics, peers, tuning, the command."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient
from scipy.sparse import csr_matrix
from typer.testing import CliRunner

from benchmarks.recsys_oracle import ORACLE_ROW
from benchmarks.recsys_peers import tune_peer
from patron.cli.main import app
from patron.config import load_settings
from tests.conftest import Workspace, small_workspace
from training.mlops.metrics import dense_scorer, evaluate, metrics_per_user, top_k
from training.mlops.splits import Split, shift_back, split_interactions, split_sizes, targets
from training.recommend.peers import PEERS, make_peer
from training.tune.two_stage_runs import rank_with_seeds, two_stage_rows


def _events(seed: int = 0, customers: int = 40, items: int = 30) -> pd.DataFrame:
    """Random interactions in shuffled row order, with some ties in time."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(customers):
        n = int(rng.integers(1, 35))
        days = np.sort(rng.integers(0, 50, size=n))  # repeated days make ties
        start = pd.Timestamp("2025-01-01")
        rows += [(f"C{c:03d}", f"I{int(rng.integers(items)):03d}", start + pd.Timedelta(days=int(d))) for d in days]
    df = pd.DataFrame(rows, columns=["customer_id", "item_id", "ts"])
    return df.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def test_split_sizes_follow_recbole_ratios() -> None:
    train, valid, test = split_sizes(np.array([1, 2, 3, 9, 10, 25, 100]))
    assert train.tolist() == [1, 1, 1, 7, 8, 21, 80]
    assert valid.tolist() == [0, 0, 1, 1, 1, 2, 10]
    assert test.tolist() == [0, 1, 1, 1, 1, 2, 10]


def test_split_is_per_customer_time_ordered_8_1_1() -> None:
    events = _events()
    split = split_interactions(events)
    counts = events.groupby("customer_id").size().reindex(split.customers).to_numpy()
    expected = split_sizes(counts)
    for frame, n in zip((split.train, split.valid, split.test), expected):
        assert np.bincount(frame["u"], minlength=len(split.customers)).tolist() == n.tolist()
    last_train = split.train.groupby("u")["ts"].max()
    first_valid, last_valid = split.valid.groupby("u")["ts"].min(), split.valid.groupby("u")["ts"].max()
    first_test = split.test.groupby("u")["ts"].min()
    assert (first_valid >= last_train.reindex(first_valid.index)).all()
    both = first_test.index.intersection(last_valid.index)
    assert (first_test[both] >= last_valid[both]).all()
    assert (first_test >= last_train.reindex(first_test.index)).all()


def test_ties_in_time_keep_the_stored_order() -> None:
    ts = pd.Timestamp("2025-01-01")
    events = pd.DataFrame({"customer_id": ["A"] * 10, "item_id": [f"I{9 - j}" for j in range(10)], "ts": [ts] * 10})
    split = split_interactions(events)
    assert split.items[split.test["i"]].tolist() == ["I0"]  # the last stored row, not the highest item id
    assert split.items[split.valid["i"]].tolist() == ["I1"]


def test_test_items_never_enter_the_training_matrices() -> None:
    split = split_interactions(_events(1))
    history = split.matrix(split.train, split.valid)
    test = targets(split, split.test, history)
    assert test.nnz > 0
    assert history.multiply(test).nnz == 0
    # every test pair outside train/validation is absent from the matrix models are fitted on
    only_test = split.test.merge(pd.concat([split.train, split.valid])[["u", "i"]], how="left", indicator=True)
    only_test = only_test[only_test["_merge"] == "left_only"]
    assert np.asarray(history[only_test["u"].to_numpy(), only_test["i"].to_numpy()]).sum() == 0


def test_seen_items_are_excluded_from_rankings() -> None:
    seen = csr_matrix(np.array([[1, 1, 0, 0, 0], [0, 0, 0, 1, 0]], dtype=np.float32))
    scores = np.array([[9.0, 8.0, 1.0, 2.0, 3.0], [0.0, 0.0, 0.0, 5.0, 0.0]])
    top = top_k(scores, seen, 3)
    assert top[0].tolist() == [4, 3, 2]
    assert top[1].tolist() == [0, 1, 2]  # ties by the lower index, the seen item 3 left out
    # a scorer that puts seen items first still earns nothing from them
    relevant = csr_matrix(np.array([[1, 0, 0, 0, 1], [0, 0, 0, 1, 0]], dtype=np.float32))
    relevant = relevant[[0]]
    got = evaluate(lambda users, _h: scores[users], seen, seen, relevant, 1, np.zeros(2, bool))
    assert got["hit@1"] == 1.0  # item 4, not the seen 0


def test_metrics_on_a_hand_computed_example() -> None:
    top = np.array([[2, 0, 1], [5, 6, 7]])
    relevant = csr_matrix(np.array([[1, 0, 0, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 1, 0, 1]], dtype=np.float32))
    m = metrics_per_user(top, relevant, 3)
    assert m["recall"].tolist() == pytest.approx([0.5, 1.0])
    assert m["ndcg"][0] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    assert m["ndcg"][1] == pytest.approx((1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3)))
    assert m["mrr"].tolist() == pytest.approx([0.5, 1.0])
    assert m["hit"].tolist() == [1.0, 1.0]
    assert m["map"].tolist() == pytest.approx([(1 / 2) / 2, (1 / 1 + 2 / 3) / 2])  # precision at each hit / min(k, n)


def test_evaluate_reports_the_cold_slice_and_coverage() -> None:
    relevant = csr_matrix(np.array([[1, 0, 0], [0, 1, 0]], dtype=np.float32))
    empty = csr_matrix((2, 3), dtype=np.float32)
    got = evaluate(
        lambda users, _h: np.tile([3.0, 2.0, 1.0], (len(users), 1)), empty, empty, relevant, 1, np.array([False, True])
    )
    assert got["ndcg@1"] == 0.5 and got["cold_ndcg@1"] == 0.0 and got["cold_users"] == 1.0
    assert got["coverage"] == pytest.approx(1 / 3)


def test_ease_is_the_closed_form_solution() -> None:
    rng = np.random.default_rng(3)
    X = csr_matrix((rng.random((30, 8)) < 0.3).astype(np.float32))
    ease = make_peer("ease", {"l2": 5.0}, 0).fit(X)
    B = ease.weights
    assert np.allclose(np.diag(B), 0.0)
    G = (X.T @ X).toarray() + 5.0 * np.eye(8)
    # each column solves the ridge regression of the item on the others: G[-j,-j] b = G[-j, j]
    for j in range(8):
        others = [i for i in range(8) if i != j]
        assert np.allclose(G[np.ix_(others, others)] @ B[others, j], (X.T @ X).toarray()[others, j], atol=1e-3)


@pytest.mark.parametrize("name", sorted(PEERS))
def test_every_peer_scores_every_item(name: str) -> None:
    split = split_interactions(_events(2))
    X = split.matrix(split.train)
    space = {
        "popularity": {},
        "als": {"factors": 4, "regularization": 0.1, "alpha": 1.0, "iterations": 2},
        "bpr": {"factors": 4, "learning_rate": 0.05, "regularization": 0.01, "iterations": 5},
        "cosine": {"K": 5},
        "bm25": {"K": 5, "K1": 1.2, "B": 0.75},
        "ease": {"l2": 10.0},
    }[name]
    scores = make_peer(name, space, 0).fit(X).score(np.arange(3), X)
    assert scores.shape == (3, X.shape[1]) and np.isfinite(scores).all()


def test_tuning_runs_the_budget_and_returns_params_from_the_space() -> None:
    split = split_interactions(_events(4, customers=60))
    cold = split.train_counts() < 5
    params, best, n = tune_peer("ease", split, 4, 0, 10, 1, cold)
    assert n == 4 and 1.0 <= params["l2"] <= 10_000.0 and 0.0 <= best <= 1.0
    assert tune_peer("popularity", split, 4, 0, 10, 1, cold)[2] == 1  # nothing to tune


def run_bench_command(ingested: Workspace, tmp_path, sections: dict) -> tuple[Workspace, Path, dict]:
    """`patron bench recsys` on the ingested workspace with these config sections; (config workspace, out, report)."""
    ws = small_workspace(tmp_path / "cfg")
    config = yaml.safe_load(ws.config.read_text()) | sections
    ws.config.write_text(yaml.safe_dump(config))
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        [
            "--config",
            str(ws.config),
            "bench",
            "recsys",
            "--dataset",
            str(ingested.settings.workspace),
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    return ws, out, json.loads((out / "recsys_bench.json").read_text())


def by_model(rows: list[dict]) -> dict[str, dict]:
    """A report table's rows by model name."""
    return {r["model"]: r for r in rows}


def test_bench_command_on_an_ingested_workspace(ingested_workspace: Workspace, tmp_path) -> None:
    ws, out, report = run_bench_command(
        ingested_workspace,
        tmp_path,
        {
            "recsys_bench": {"trials": 1, "ablation": False, "peers": ["popularity", "ease"]},
            "two_stage": {"num_boost_round": 30, "candidates_per_source": 30, "label_windows": 1},
        },
    )
    # the synthetic workspace has views: EASE is also given them, its weight tuned like its own params
    assert [r["model"] for r in report["rows"]] == [
        "popularity",
        "ease",
        "ease + browsing (view)",
        "patron two-stage",
        ORACLE_ROW,
    ]
    assert 0.03 <= report["rows"][2]["params"]["browsing_weight"] <= 1.0
    assert "browsing_weight" in report["details"]["search_spaces"]["ease + browsing"]
    assert report["details"]["browsing_events"] == ["view"]  # the configured browsing events (carts repeat views)
    assert report["protocol"]["trials"] == 1 and report["fingerprint"]
    assert all(0.0 <= r["ndcg@10"] <= 1.0 for r in report["rows"])
    two_stage = report["rows"][3]
    assert two_stage["valid_ndcg"] is not None and two_stage["note"].startswith("1 TPE trials + ")
    # every configured source was tried without it on validation; the dropped ones are not in the chosen pipeline
    steps = report["tables"]["elimination"]["rows"]
    dropped = {e["source"] for e in steps if e["dropped"]}
    assert {e["source"] for e in steps} <= {"als", "item_item", "ease", "copurchase", "trending", "popular", "ranker"}
    assert len(steps) >= 5 and not dropped & set(two_stage["params"]["sources"])
    assert steps[-1]["source"] == "ranker" and two_stage["params"]["ranker"] == (not steps[-1]["dropped"])
    best, margin = steps[0]["valid_ndcg_with"], load_settings(ws.config).recsys_bench.elimination_margin
    for e in steps:  # dropped unless it falls more than the margin (at least the configured one) below the best
        assert e["margin"] >= margin and len(e["without_per_seed"]) == (1 if e["source"] == "ranker" else 3)
        assert e["dropped"] == (e["valid_ndcg_without"] >= best - e["margin"])
        best = max(best, e["valid_ndcg_without"]) if e["dropped"] else best
    # the chosen pipeline's score: its start's, or the score without the last source dropped
    assert two_stage["valid_ndcg"] == pytest.approx(
        ([steps[0]["valid_ndcg_with"]] + [e["valid_ndcg_without"] for e in steps if e["dropped"]])[-1]
    )
    assert set(report["details"]["search_spaces"]["patron two-stage"]) >= {
        "sources",
        "candidates_per_source",
        "num_leaves",
    }
    assert "| patron two-stage |" in (out / "recsys_bench.md").read_text()
    assert "### Source elimination on validation" in (out / "recsys_bench.md").read_text()
    # the run is in MLflow with its parameters, every model's metrics and both tables
    client = MlflowClient(ws.settings.tracking_uri)
    run = client.get_run(report["run_id"])
    assert run.data.params["dataset"] == str(ingested_workspace.settings.workspace)
    assert run.data.params["trials"] == "1" and run.data.params["data_fingerprint"] == report["fingerprint"]
    assert run.data.metrics["ease.ndcg_10"] == pytest.approx(report["rows"][1]["ndcg@10"])
    assert {a.path for a in client.list_artifacts(run.info.run_id, "bench")} == {
        "bench/recsys_bench.json",
        "bench/recsys_bench.md",
    }


def test_bench_ablation_averages_each_source_removal_over_ranker_seeds(ingested_workspace: Workspace, tmp_path) -> None:
    _, _, report = run_bench_command(
        ingested_workspace,
        tmp_path,
        {
            "recsys_bench": {
                "trials": 1,
                "ablation": True,
                "ablation_seeds": 2,
                "peers": ["popularity"],
                "browsing_peers": [],
                "elimination_ranker": False,
            },
            "two_stage": {
                "num_boost_round": 20,
                "candidates_per_source": 20,
                "label_windows": 1,
                "sources": {"als": False, "ease": False, "popular": False, "trending": False},
            },
            "sequence": {"epochs": 1, "dim": 8},
        },
    )
    rows = by_model(report["tables"]["ablation"]["rows"])
    main = by_model(report["rows"])["patron two-stage"]
    kept = main["params"]["sources"]
    assert 1 <= len(kept) <= 2 and set(kept) <= {"item_item", "copurchase"}
    averaged = ["patron two-stage, mean of 2 ranker seeds"] + (
        [f"without {s}, mean of 2 ranker seeds" for s in kept] if len(kept) > 1 else []
    )
    assert set(averaged) <= set(rows) and {
        "without the ranker (rank fusion)",
        "without browsing events",
        "with the sequence model",
    } <= set(rows)
    for name in averaged:  # the row is the mean of its seeds' runs, written in its note
        per_seed = [float(v) for v in rows[name]["note"].split(": ")[1].split(", ")]
        assert len(per_seed) == 2 and rows[name]["ndcg@10"] == pytest.approx(np.mean(per_seed), abs=1e-4)
    # the first seed is the configured one: the main row itself
    assert float(rows[averaged[0]]["note"].split(": ")[1].split(", ")[0]) == pytest.approx(main["ndcg@10"], abs=1e-4)


def test_bench_command_names_a_bad_dataset(tmp_path) -> None:
    result = CliRunner().invoke(
        app, ["bench", "recsys", "--dataset", str(tmp_path / "nothing")], env={"PATRON_HOME": str(tmp_path / "ws")}
    )
    assert result.exit_code == 2
    assert "dataset" in result.output


def test_shift_back_is_the_same_protocol_one_period_earlier() -> None:
    split = split_interactions(_events(3))
    inner = shift_back(split)
    assert inner.test.equals(split.valid)
    merged = pd.concat([inner.train, inner.valid]).sort_values(["u", "ts"], kind="stable").reset_index(drop=True)
    assert merged[["u", "i"]].equals(
        split.train.sort_values(["u", "ts"], kind="stable")[["u", "i"]].reset_index(drop=True)
    )
    valid_n = np.bincount(split.valid["u"], minlength=split.shape[0])
    assert (
        np.bincount(inner.valid["u"], minlength=split.shape[0]).tolist()
        == np.minimum(valid_n, split.train_counts()).tolist()
    )
    last_train = inner.train.groupby("u")["ts"].max()
    first_valid = inner.valid.groupby("u")["ts"].min()
    both = first_valid.index.intersection(last_train.index)
    assert (first_valid[both] >= last_train[both]).all()


def test_oracle_ranks_the_favourite_category_first(ingested_workspace: Workspace, tmp_path) -> None:
    from benchmarks.recsys import load_interactions
    from benchmarks.recsys_oracle import oracle_scorer
    from features.tables.store import read_table, write_table

    truth = tmp_path / "truth"
    shutil.copytree(ingested_workspace.settings.ground_truth_dir, truth)
    events, products = load_interactions(ingested_workspace.settings.workspace)
    split = split_interactions(events)
    seen = split.matrix(split.train, split.valid)
    test = targets(split, split.test, seen)
    users = np.flatnonzero(np.diff(test.indptr))[:3]
    category = products.astype(str).drop_duplicates("item_id").set_index("item_id")["category"]
    cats = category.reindex(split.items).to_numpy()
    names = sorted(set(cats))
    favourite = {str(split.customers[u]): names[n * 2] for n, u in enumerate(users)}
    taste = read_table(truth, "taste")
    taste = pd.concat(
        [
            taste[~taste["customer_id"].isin(favourite)],
            pd.DataFrame(
                {"customer_id": list(favourite), "category": list(favourite.values()), "weight": np.float32(1.0)}
            ),
        ],
        ignore_index=True,
    )
    write_table(taste, truth, "taste")
    # accessories of the customers' own purchases may rank first (pending complements): leave them out of the check
    pairs = read_table(truth, "complements")
    history = pd.concat([split.train, split.valid])
    accessory = set(pairs["complement_item_id"][pairs["item_id"].isin(split.items[history["i"]])])
    scores = oracle_scorer(truth, split)(users, seen)
    scores[:, np.isin(split.items, list(accessory))] = -np.inf
    top = top_k(scores, seen[users], 3)
    for row, u in enumerate(users):
        assert set(cats[top[row]]) == {favourite[str(split.customers[u])]}
    assert oracle_scorer(tmp_path / "nothing", split) is None


def test_two_stage_tuning_never_reads_test() -> None:
    from benchmarks.recsys import tune_two_stage
    from patron.config import TwoStageConfig
    from training.recommend.ranker_features import ItemInfo

    split = split_interactions(_events(5, customers=120, items=40))
    config = TwoStageConfig(
        num_boost_round=20,
        candidates_per_source=20,
        label_windows=1,
        threads=1,
        ranker_params={
            "objective": "lambdarank",
            "metric": "ndcg",
            "eval_at": [10],
            "verbose": -1,
            "learning_rate": 0.1,
            "num_leaves": 7,
            "min_data_in_leaf": 5,
            "lambda_l2": 1.0,
            "feature_fraction": 0.6,
        },
    )
    cold = split.train_counts() < 5
    items = ItemInfo.empty(split.shape[1])
    config = config.model_copy(update={"sources": config.sources.model_copy(update={"ease": False, "popular": False})})
    first = tune_two_stage(split, items, config, {}, 7, 0, 10, cold, elimination_seeds=2)
    scrambled = split.test.assign(i=(split.test["i"] + 7) % split.shape[1])
    second = tune_two_stage(
        Split(split.customers, split.items, split.train, split.valid, scrambled),
        items,
        config,
        {},
        7,
        0,
        10,
        cold,
        elimination_seeds=2,
    )
    assert first.valid_ndcg == second.valid_ndcg and first.config == second.config
    assert first.elimination == second.elimination
    # 4 sources on: 1 TPE trial, rescored with a fresh seed, the elimination's start, then one run per source until
    # one is left
    assert first.tpe_trials == 1 and len(first.rescored) == 1 and 3 <= len(first.elimination) <= 4
    assert first.runs <= 7 and first.rescored[0]["trial"] == 0
    assert first.config.seed == config.seed  # the elimination's fresh ranker seeds are not the model's
    # the elimination's start is the mean of fresh seeds (seed + 1, seed + 2) fitted on the configured pipeline's rows
    inner = shift_back(split)
    seen = split.matrix(split.train)
    valid = targets(split, split.valid, seen)
    rows = two_stage_rows(
        inner.train,
        targets(inner, inner.valid, inner.matrix(inner.train)),
        split.train,
        valid,
        split.shape,
        items,
        config,
        {},
        0,
    )
    by_seed = [
        evaluate(dense_scorer(r.scorer_scores, valid), seen, seen, valid, 10, cold)["ndcg@10"]
        for r in rank_with_seeds(rows, config, [config.seed + 1, config.seed + 2])
    ]
    assert by_seed[0] != by_seed[1]  # the seeds differ, so the mean is not either one
    assert first.elimination[0]["valid_ndcg_with"] == pytest.approx(np.mean(by_seed))
    assert 0.0 < first.valid_ndcg <= 1.0


def test_rescoring_picks_the_best_mean_of_two_seeds_not_the_luckiest_trial() -> None:
    import optuna

    from training.tune.two_stage_search import rescore_best

    study = optuna.create_study(direction="maximize")
    for x, value in enumerate([0.30, 0.34, 0.32, 0.31]):
        study.add_trial(
            optuna.trial.create_trial(
                params={"x": x}, value=value, distributions={"x": optuna.distributions.IntDistribution(0, 3)}
            )
        )
    fresh = {0: 0.50, 1: 0.28, 2: 0.315, 3: 0.33}  # trial 1's 0.34 was a lucky draw
    asked = []

    def rescore(trial: optuna.trial.FrozenTrial) -> float:
        asked.append(trial.params["x"])
        return fresh[trial.params["x"]]

    chosen, value, lines = rescore_best(study, 3, rescore)
    assert asked == [1, 2, 3]  # the three best TPE scores, best first; trial 0 is never rescored
    assert [line["mean"] for line in lines] == pytest.approx([0.31, 0.3175, 0.32])
    assert chosen.params["x"] == 3 and value == pytest.approx(0.33)
    chosen, value, lines = rescore_best(study, 1, rescore)
    assert chosen.params["x"] == 1 and value == pytest.approx(0.28) and len(lines) == 1


def test_elimination_drops_the_sources_that_do_not_help_weakest_first() -> None:
    from patron.config import TwoStageConfig
    from training.tune.two_stage_search import eliminate_sources, enabled_sources

    sources = {
        "als": True,
        "item_item": True,
        "ease": True,
        "copurchase": False,
        "repeat": False,
        "trending": True,
        "popular": False,
        "sequence": False,
    }
    config = TwoStageConfig(sources=sources)
    worth = {"als": 0.0, "item_item": 0.02, "ease": 0.01, "trending": -0.005}  # what each source adds on validation
    tried = []

    def score(c: TwoStageConfig) -> tuple[list[float], dict[str, float]]:
        tried.append(set(enabled_sources(c)))
        return [0.3 + sum(worth[s] for s in enabled_sources(c))], {}

    importance = {"item_item_rank": 0.5, "ease_score": 0.3, "als_rank": 0.15, "trending_rank": 0.05}
    chosen, value, steps = eliminate_sources(config, importance, score)
    assert tried[0] == {"als", "item_item", "ease", "trending"}  # the starting point is measured first
    assert steps[0]["valid_ndcg_with"] == pytest.approx(0.3 + sum(worth.values()))
    assert [s["source"] for s in steps] == ["trending", "als", "ease", "item_item"]  # by gain share, lowest first
    assert [s["dropped"] for s in steps] == [True, True, False, False]  # ALS adds nothing: a tie drops it
    assert enabled_sources(chosen) == ["item_item", "ease"] and value == pytest.approx(0.33)
    assert tried[2] == {"item_item", "ease"}  # each step starts from what is left

    # with a margin a source must add more than it: trending (-0.005) and ALS (0) drop, EASE (+0.01) is kept at
    # 0.005 but dropped at 0.015, measured against the best score kept so far
    chosen, value, steps = eliminate_sources(config, importance, score, margin=0.005)
    assert [s["dropped"] for s in steps] == [True, True, False, False]
    chosen, value, steps = eliminate_sources(config, importance, score, margin=0.015)
    assert [s["dropped"] for s in steps] == [True, True, True]  # item-item is left alone: never tried
    assert enabled_sources(chosen) == ["item_item"] and value == pytest.approx(0.32)
    assert [s["valid_ndcg_with"] for s in steps] == pytest.approx([0.325, 0.33, 0.33])

    lone, _, steps = eliminate_sources(
        TwoStageConfig(sources={**sources, "item_item": False, "ease": False, "trending": False}), {}, score
    )
    assert enabled_sources(lone) == ["als"] and steps == []  # the last source is never dropped


def test_elimination_keeps_a_source_only_above_the_seeds_noise() -> None:
    from patron.config import TwoStageConfig
    from training.tune.two_stage_search import eliminate_sources, enabled_sources, mean_difference_sd

    # two seeds per configuration, each pair 0.004 apart: per-seed variance 8e-6, a difference of two-seed means
    # has sd sqrt(8e-6 * 2 / 2) = 0.002828
    assert mean_difference_sd([[0.30, 0.304], [0.31, 0.314]]) == pytest.approx(0.0028284, abs=1e-6)
    assert mean_difference_sd([[0.30], [0.31]]) == 0.0  # one seed: no spread to read
    sources = {
        "als": True,
        "item_item": True,
        "ease": True,
        "copurchase": False,
        "repeat": False,
        "trending": False,
        "popular": False,
        "sequence": False,
    }
    worth = {"als": 0.004, "item_item": 0.05, "ease": 0.008}  # ALS adds 1.4 sd, EASE 2.8 sd

    def score(c: TwoStageConfig) -> tuple[list[float], dict[str, float]]:
        mean = 0.3 + sum(worth[s] for s in enabled_sources(c))
        return [mean - 0.002, mean + 0.002], {}

    importance = {"als_rank": 0.1, "ease_rank": 0.2, "item_item_rank": 0.7}
    config = TwoStageConfig(sources=sources)
    chosen, value, steps = eliminate_sources(config, importance, score, margin=0.001, z=2.0)
    assert [s["source"] for s in steps] == ["als", "ease", "item_item"]
    assert [s["margin"] for s in steps] == pytest.approx([2 * 0.0028284] * 3, abs=1e-6)
    assert [s["dropped"] for s in steps] == [True, False, False]  # ALS's 0.004 is inside 2 sd, EASE's 0.008 not
    assert enabled_sources(chosen) == ["item_item", "ease"] and value == pytest.approx(0.358)
    assert steps[0]["without_per_seed"] == pytest.approx([0.356, 0.36])
    # without z the floor margin alone decides: ALS's 0.004 keeps it
    assert [s["dropped"] for s in eliminate_sources(config, importance, score, margin=0.001)[2]] == [False] * 3


def test_elimination_rechecks_a_source_kept_under_an_early_noise_estimate() -> None:
    from patron.config import TwoStageConfig
    from training.tune.two_stage_search import eliminate_sources, enabled_sources

    sources = {
        "als": True,
        "item_item": True,
        "ease": True,
        "copurchase": False,
        "repeat": False,
        "trending": True,
        "popular": False,
        "sequence": False,
    }
    worth = {"als": 0.003, "trending": 0.0, "ease": 0.02, "item_item": 0.05}
    calls = []

    def score(c: TwoStageConfig) -> tuple[list[float], dict[str, float]]:
        # the first two configurations measured happen to have seeds 0.001 apart, every later one 0.008 apart
        calls.append(set(enabled_sources(c)))
        mean, half = 0.3 + sum(worth[s] for s in enabled_sources(c)), (0.0005 if len(calls) <= 2 else 0.004)
        return [mean - half, mean + half], {}

    importance = {"als_rank": 0.05, "trending_rank": 0.1, "ease_rank": 0.25, "item_item_rank": 0.6}
    config = TwoStageConfig(sources=sources)
    chosen, value, steps = eliminate_sources(config, importance, score, margin=0.001, z=2.0, rechecks=1)
    assert [(s["source"], s["recheck"], s["dropped"]) for s in steps] == [
        ("als", False, False),
        ("trending", False, True),
        ("ease", False, False),
        ("item_item", False, False),
        ("als", True, True),
    ]
    # ALS's 0.003 cleared a first margin read off two tight configurations: 2 * sqrt(5e-7 * 2 / 2) = 0.00141
    assert steps[0]["margin"] == pytest.approx(0.0014142, abs=1e-6)
    # measured again from what is left once six configurations are pooled: 2 * sqrt((2 * 5e-7 + 4 * 3.2e-5) / 6)
    assert steps[-1]["margin"] == pytest.approx(2 * np.sqrt((2 * 5e-7 + 4 * 3.2e-5) / 6), abs=1e-7)
    assert calls[-1] == {"item_item", "ease"}
    assert enabled_sources(chosen) == ["item_item", "ease"] and value == pytest.approx(0.37)
    # without a re-check ALS stays; EASE (0.02, outside every margin) is never re-checked
    calls.clear()
    chosen, _, steps = eliminate_sources(config, importance, score, margin=0.001, z=2.0)
    assert enabled_sources(chosen) == ["als", "item_item", "ease"] and not any(s["recheck"] for s in steps)


def test_elimination_tries_the_ranker_last_against_rank_fusion() -> None:
    from patron.config import TwoStageConfig
    from training.tune.two_stage_search import eliminate_sources, enabled_sources

    sources = {
        "als": False,
        "item_item": True,
        "ease": True,
        "copurchase": False,
        "repeat": False,
        "trending": False,
        "popular": False,
        "sequence": False,
    }
    worth = {"item_item": 0.05, "ease": 0.02}

    def scorer(ranker_gain: float):
        def score(c: TwoStageConfig) -> tuple[list[float], dict[str, float]]:
            mean = 0.3 + sum(worth[s] for s in enabled_sources(c))
            # rank fusion has no ranker, so no seed: one score
            return ([mean + ranker_gain - 0.002, mean + ranker_gain + 0.002] if c.ranker else [mean]), {}

        return score

    importance = {"ease_rank": 0.3, "item_item_rank": 0.7}
    config = TwoStageConfig(sources=sources)
    margin = 2 * 0.0028284  # two seeds 0.004 apart, as in the test above
    chosen, value, steps = eliminate_sources(config, importance, scorer(0.004), margin=0.001, z=2.0, ranker=True)
    assert [(s["source"], s["dropped"]) for s in steps] == [("ease", False), ("item_item", False), ("ranker", True)]
    assert steps[-1]["gain_share"] is None and steps[-1]["without_per_seed"] == pytest.approx([0.37])
    assert steps[-1]["margin"] == pytest.approx(margin, abs=1e-6)
    assert not chosen.ranker and enabled_sources(chosen) == ["item_item", "ease"] and value == pytest.approx(0.37)
    chosen, value, steps = eliminate_sources(config, importance, scorer(0.03), margin=0.001, z=2.0, ranker=True)
    assert steps[-1]["source"] == "ranker" and not steps[-1]["dropped"]
    assert chosen.ranker and value == pytest.approx(0.40)
    # not asked: the ranker is never tried
    assert [s["source"] for s in eliminate_sources(config, importance, scorer(0.004), margin=0.001, z=2.0)[2]] == [
        "ease",
        "item_item",
    ]


def test_bench_ablation_shows_the_ranker_when_the_pipeline_has_none(ingested_workspace: Workspace, tmp_path) -> None:
    _, out, report = run_bench_command(
        ingested_workspace,
        tmp_path,
        {
            "recsys_bench": {
                "trials": 1,
                "ablation": True,
                "ablation_seeds": 2,
                "peers": ["popularity"],
                "browsing_peers": [],
            },
            "two_stage": {
                "num_boost_round": 20,
                "candidates_per_source": 20,
                "label_windows": 1,
                "ranker": False,
                "sources": {"als": False, "ease": False, "popular": False, "trending": False, "copurchase": False},
            },
            "sequence": {"epochs": 1, "dim": 8},
        },
    )
    main = by_model(report["rows"])["patron two-stage"]
    assert main["params"]["ranker"] is False and "no ranker: rank fusion" in main["note"]
    assert all(e["source"] != "ranker" for e in report["tables"]["elimination"]["rows"])  # nothing to try
    rows = by_model(report["tables"]["ablation"]["rows"])
    assert "without the ranker (rank fusion)" not in rows
    with_ranker = rows["with the LightGBM ranker, mean of 2 ranker seeds"]
    assert len(with_ranker["note"].split(": ")[1].split(", ")) == 2
    assert with_ranker["ndcg@10"] != pytest.approx(main["ndcg@10"], abs=1e-9)
