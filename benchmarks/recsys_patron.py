"""The recsys bench's Patron row: the two-stage pipeline exactly as `patron train recommender` ships it."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.sparse import csr_matrix

from patron.config import Settings
from training.recommend.ranker import ItemInfo
from training.recommend.two_stage import fit_pipeline, source_peer_params


def shipped_scores(
    settings: Settings,
    history_train: pd.DataFrame,
    labels: csr_matrix,
    history_full: pd.DataFrame,
    users: np.ndarray,
    items: ItemInfo,
    browsing: pd.DataFrame | None,
    window_end: pd.Series | None = None,
    window_start: pd.Timestamp | None = None,
) -> np.ndarray:
    """The Patron row's scores (users x items, -1e9 outside the candidates): the pipeline `patron train recommender`
    ships (`fit_pipeline`) with the settings' two-stage section and peer sources, ranker labels `labels` over sources
    fit on `history_train`, sources refit on `history_full` (window_end: each customer's last event in it)."""
    cfg = settings.two_stage
    shape = labels.shape
    pipeline = fit_pipeline(
        history_train,
        labels,
        history_full,
        shape,
        items,
        cfg,
        source_peer_params(settings),
        settings.sequence,
        browsing if cfg.browsing_events else None,
        history_full.groupby("u")["ts"].max() if window_end is None else window_end,
        window_start,
    )
    scores = pipeline.scores(users, pipeline.sources.X[users])
    return np.where(np.isfinite(scores), scores, -1e9)
