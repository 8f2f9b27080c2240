"""Offline evaluation: ranking metrics for recommenders, discrimination and calibration metrics for churn."""

from __future__ import annotations

import numpy as np
import pandas as pd
from implicit.evaluation import ranking_metrics_at_k
from scipy.sparse import csr_matrix
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score


def ranking_metrics(model: object, train: csr_matrix, test: csr_matrix, k: int) -> dict[str, float]:
    """Recall@k, NDCG@k, MAP@k and catalogue coverage of an implicit model, items seen in `train` excluded."""
    users = np.flatnonzero(np.diff(test.indptr))
    if len(users) == 0:
        raise ValueError("no evaluation customers: the holdout holds no new purchases by known customers")
    scores = ranking_metrics_at_k(model, train, test, K=k, show_progress=False)
    ids, _ = model.recommend(users, train[users], N=k, filter_already_liked_items=True)
    relevant = test[users]
    hits = np.array([np.isin(ids[i], relevant.indices[relevant.indptr[i]:relevant.indptr[i + 1]]).sum()
                     for i in range(len(users))])
    n_relevant = np.diff(relevant.indptr)
    return {
        f"recall_at_{k}": float(np.mean(hits / n_relevant)),
        f"ndcg_at_{k}": float(scores["ndcg"]),
        f"map_at_{k}": float(scores["map"]),
        "catalogue_coverage": float(len(np.unique(ids[ids >= 0])) / train.shape[1]),
        "eval_customers": float(len(users)),
    }


def lift_at(y_true: np.ndarray, p: np.ndarray, share: float = 0.1) -> float:
    """Churn rate among the `share` highest scores divided by the overall churn rate."""
    n_top = max(1, int(round(len(p) * share)))
    top = np.argsort(-p, kind="stable")[:n_top]
    return float(np.mean(y_true[top]) / np.mean(y_true))


def churn_metrics(y_true: np.ndarray | pd.Series, p: np.ndarray) -> dict[str, float]:
    """ROC-AUC, PR-AUC (average precision), Brier score and top-decile lift of churn probabilities."""
    y = np.asarray(y_true, dtype=int)
    if y.min() == y.max():
        raise ValueError("churned: the evaluation labels hold a single class; AUC is undefined")
    return {
        "roc_auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "brier": float(brier_score_loss(y, p)),
        "lift_top_decile": lift_at(y, p, 0.1),
        "base_rate": float(y.mean()),
    }
