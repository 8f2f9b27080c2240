"""The two-stage pipeline under the benchmark protocol: its ranker rows built once, then ranked with one or more
ranker seeds (a seed changes only the ranker's fit, so the rows are shared)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.sparse import csr_matrix

from patron.config import SequenceConfig, TwoStageConfig
from training.recommend.candidates import CandidateSources, candidate_recall
from training.recommend.ranker import fit_ranker, ranker_training_set, reciprocal_rank_fusion
from training.recommend.ranker_features import ItemInfo, pair_features


@dataclass
class TwoStageRows:
    """The ranker's training rows with their labels, and the test customers' candidate rows."""

    train: pd.DataFrame
    labels: np.ndarray
    test: pd.DataFrame
    sources: list[str]
    shape: tuple[int, int]  # test customers x items
    candidate_recall_valid: float
    candidate_recall_test: float
    source_scores: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class TwoStageResult:
    """Test metrics of the two-stage pipeline, its ablation and diagnostics."""

    scorer_scores: np.ndarray
    candidate_recall_valid: float
    candidate_recall_test: float
    feature_importance: dict[str, float] = field(default_factory=dict)
    source_scores: dict[str, np.ndarray] = field(default_factory=dict)
    best_iteration: int = 0


def two_stage_rows(
    history_train: pd.DataFrame,
    labels_valid: csr_matrix,
    history_full: pd.DataFrame,
    test_relevant: csr_matrix,
    shape: tuple[int, int],
    items: ItemInfo,
    config: TwoStageConfig,
    peer_params: dict[str, dict[str, Any]],
    seed: int,
    sequence: SequenceConfig | None = None,
    browsing: pd.DataFrame | None = None,
) -> TwoStageRows:
    """The ranker's rows: candidates and labels of validation with sources fitted on train (and earlier label
    windows), and test candidates with sources refitted on train + validation. `browsing` (views, carts) reaches
    each fit only up to the day of each customer's last purchase in it."""
    valid_end = history_full.groupby("u")["ts"].max()
    feats_v, y, recall_v = ranker_training_set(
        history_train, labels_valid, shape, items, config, peer_params, seed, sequence, browsing, valid_end
    )
    full = CandidateSources(config, peer_params, seed, sequence).fit(history_full, shape, browsing)
    users_t = np.flatnonzero(np.diff(test_relevant.indptr))
    feats_t, cands_t, scores_t = pair_features(full, users_t, items, full.X[users_t])
    return TwoStageRows(
        feats_v,
        y,
        feats_t,
        full.enabled,
        (len(users_t), shape[1]),
        recall_v,
        candidate_recall(cands_t, test_relevant[users_t]),
        scores_t,
    )


def rank_rows(rows: TwoStageRows, config: TwoStageConfig) -> TwoStageResult:
    """Fit the ranker (seed: `config.seed`) on the training rows and score the test rows: dense scores for the
    customers with test items (row order = their codes)."""
    result = TwoStageResult(
        np.empty(0), rows.candidate_recall_valid, rows.candidate_recall_test, source_scores=rows.source_scores
    )
    if config.ranker:
        booster = fit_ranker(rows.train, rows.labels, config)
        values = booster.predict(rows.test.drop(columns=["user", "item"]), num_iteration=booster.best_iteration)
        gain = booster.feature_importance("gain")
        result.feature_importance = dict(
            sorted(zip(booster.feature_name(), (gain / gain.sum()).round(4).tolist()), key=lambda kv: -kv[1])
        )
        result.best_iteration = int(booster.best_iteration)
    else:
        values = reciprocal_rank_fusion(rows.test, rows.sources)
    result.scorer_scores = dense(rows.test, values, rows.shape)
    return result


def rank_with_seeds(rows: TwoStageRows, config: TwoStageConfig, seeds: Sequence[int]) -> list[TwoStageResult]:
    """`rank_rows` once per ranker seed (one result without the ranker: it has no seed)."""
    return [rank_rows(rows, config.model_copy(update={"seed": s})) for s in (seeds if config.ranker else seeds[:1])]


def two_stage(
    history_train: pd.DataFrame,
    labels_valid: csr_matrix,
    history_full: pd.DataFrame,
    test_relevant: csr_matrix,
    shape: tuple[int, int],
    items: ItemInfo,
    config: TwoStageConfig,
    peer_params: dict[str, dict[str, Any]],
    seed: int,
    sequence: SequenceConfig | None = None,
    browsing: pd.DataFrame | None = None,
) -> TwoStageResult:
    """Train the ranker on validation labels with sources fitted on train, then rank test with sources refitted
    on train + validation (`two_stage_rows`, then `rank_rows`)."""
    return rank_rows(
        two_stage_rows(
            history_train,
            labels_valid,
            history_full,
            test_relevant,
            shape,
            items,
            config,
            peer_params,
            seed,
            sequence,
            browsing,
        ),
        config,
    )


class LastRows:
    """`build`'s rows for the last configuration asked, reused when the next one differs at most in the ranker
    switch: rank fusion ranks the very rows the ranker does, so "without the ranker" costs no second build."""

    def __init__(self, build: Callable[[TwoStageConfig], TwoStageRows]) -> None:
        self.build, self.key, self.rows = build, "", None

    def __call__(self, config: TwoStageConfig) -> TwoStageRows:
        key = config.model_copy(update={"ranker": True}).model_dump_json()
        if self.rows is None or key != self.key:
            self.rows, self.key = None, key  # the old rows go before the new ones are built
            self.rows = self.build(config)
        return self.rows


def dense(features: pd.DataFrame, values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Users x items scores: candidates get their values, everything else far below."""
    out = np.full(shape, -1e9, dtype=np.float64)
    out[features["user"].to_numpy(), features["item"].to_numpy()] = values
    return out
