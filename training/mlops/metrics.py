"""Offline evaluation metrics: ranking metrics @k for recommenders, discrimination and calibration for churn.

Every ranking figure Patron reports (training's holdout, tuning, promotion comparisons, reports, benchmarks) is a
mean over customers of `metrics_per_user`. NDCG's ideal DCG counts min(k, relevant items) hits, as implicit's
`ranking_metrics_at_k` and RecBole do; MAP@k divides by min(k, relevant items), as implicit does.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy.sparse import csr_matrix
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

Scorer = Callable[[np.ndarray, csr_matrix], np.ndarray]  # (users, history matrix) -> dense scores
METRICS = ("recall", "ndcg", "map", "mrr", "hit")


def top_k(scores: np.ndarray, seen: csr_matrix, k: int) -> np.ndarray:
    """Indices of the k best items per row, seen items excluded, ties broken by the lower item index."""
    scores = np.array(scores, dtype=np.float64, copy=True)
    rows, cols = seen.nonzero()
    scores[rows, cols] = -np.inf
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.lexsort((part, -np.take_along_axis(scores, part, axis=1)), axis=1)
    return np.take_along_axis(part, order, axis=1)


def metrics_per_user(top: np.ndarray, relevant: csr_matrix, k: int) -> dict[str, np.ndarray]:
    """Recall, NDCG, MAP, MRR and hit @k of each row's ranked list (rows need at least one relevant item)."""
    hits = np.zeros(top.shape, dtype=bool)
    for r in range(top.shape[0]):
        hits[r] = np.isin(top[r], relevant.indices[relevant.indptr[r] : relevant.indptr[r + 1]])
    n_rel = np.diff(relevant.indptr).astype(np.float64)
    discounts = 1.0 / np.log2(np.arange(2, top.shape[1] + 2))
    capped = np.minimum(n_rel, k)
    ideal = np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))[capped.astype(int) - 1]
    precision_at_hits = np.where(hits, np.cumsum(hits, axis=1) / np.arange(1, top.shape[1] + 1), 0.0)
    first = np.where(hits.any(axis=1), hits.argmax(axis=1) + 1, np.inf)
    return {
        "recall": hits.sum(axis=1) / n_rel,
        "ndcg": (hits * discounts).sum(axis=1) / ideal,
        "map": precision_at_hits.sum(axis=1) / capped,
        "mrr": 1.0 / first,
        "hit": hits.any(axis=1).astype(np.float64),
    }


def catalogue_coverage(lists: np.ndarray, n_items: int) -> float:
    """Share of the catalogue that appears in at least one list (-1 padding ignored)."""
    return float(len(np.unique(lists[lists >= 0])) / n_items)


def ranking_metrics(model: object, train: csr_matrix, test: csr_matrix, k: int) -> dict[str, float]:
    """Recall@k, NDCG@k, MAP@k and catalogue coverage of a model with implicit's `recommend`, items in `train`
    excluded, over the customers with items in `test`."""
    users = np.flatnonzero(np.diff(test.indptr))
    if len(users) == 0:
        raise ValueError("no evaluation customers: the holdout holds no new purchases by known customers")
    ids, _ = model.recommend(users, train[users], N=k, filter_already_liked_items=True)
    per_user = metrics_per_user(ids, test[users], k)
    return {
        f"recall_at_{k}": float(np.mean(per_user["recall"])),
        f"ndcg_at_{k}": float(np.mean(per_user["ndcg"])),
        f"map_at_{k}": float(np.mean(per_user["map"])),
        "catalogue_coverage": catalogue_coverage(ids, train.shape[1]),
        "eval_customers": float(len(users)),
    }


def evaluate(
    scorer: Scorer,
    history: csr_matrix,
    seen: csr_matrix,
    relevant: csr_matrix,
    k: int,
    cold: np.ndarray,
    batch: int = 1024,
) -> dict[str, float]:
    """Full-ranking metrics @k over customers with relevant items (and their cold slice), plus item coverage."""
    users = np.flatnonzero(np.diff(relevant.indptr))
    if len(users) == 0:
        raise ValueError("no evaluation customers: no unseen items in the evaluated period")
    per_user: dict[str, list[np.ndarray]] = {m: [] for m in METRICS}
    lists = []
    for start in range(0, len(users), batch):
        chunk = users[start : start + batch]
        top = top_k(scorer(chunk, history), seen[chunk], k)
        lists.append(np.unique(top))
        for m, v in metrics_per_user(top, relevant[chunk], k).items():
            per_user[m].append(v)
    values = {m: np.concatenate(v) for m, v in per_user.items()}
    is_cold = cold[users]
    out = {f"{m}@{k}": float(v.mean()) for m, v in values.items()}
    out.update(
        {f"cold_{m}@{k}": (float(v[is_cold].mean()) if is_cold.any() else float("nan")) for m, v in values.items()}
    )
    out["coverage"] = catalogue_coverage(np.concatenate(lists), history.shape[1])
    out["users"], out["cold_users"] = float(len(users)), float(is_cold.sum())
    return out


def dense_scorer(matrix: np.ndarray, relevant: csr_matrix) -> Scorer:
    """A scorer over dense scores whose rows are the customers with relevant items, in code order."""
    position = pd.Series(np.arange(matrix.shape[0]), index=np.flatnonzero(np.diff(relevant.indptr)))
    return lambda users, _history: matrix[position[users].to_numpy()]


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
