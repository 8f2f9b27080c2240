"""`patron compare MODEL`: champion vs latest candidate on the same evaluation data, with a bootstrap interval.

churn: ROC-AUC of both boosters on the workspace's test cutoff, customers resampled with replacement.
recommender: NDCG@K of both versions' parameters refit before the holdout, holdout customers resampled.
The interval is the percentile interval of the resampled differences (candidate - champion), seeded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score
from tqdm.auto import tqdm

from features.pit import build
from patron.config import Settings
from patron.reports.runs import ModelRun, ReportError, champion_and_candidate
from training.churn.model import ChurnModel


@dataclass(frozen=True)
class Comparison:
    """Both versions' metric on the same data, the difference (candidate - champion) and its bootstrap interval."""

    model: str
    metric: str
    champion: ModelRun
    candidate: ModelRun
    champion_value: float
    candidate_value: float
    ci_low: float
    ci_high: float
    level: float
    n_boot: int
    rows: int

    @property
    def difference(self) -> float:
        """Candidate minus champion."""
        return self.candidate_value - self.champion_value

    def table(self) -> pd.DataFrame:
        """Side by side: one row per version and one for the difference."""
        return pd.DataFrame(
            [
                {
                    "": f"champion v{self.champion.version}",
                    self.metric: self.champion_value,
                    "ci_low": np.nan,
                    "ci_high": np.nan,
                },
                {
                    "": f"candidate v{self.candidate.version}",
                    self.metric: self.candidate_value,
                    "ci_low": np.nan,
                    "ci_high": np.nan,
                },
                {"": "difference", self.metric: self.difference, "ci_low": self.ci_low, "ci_high": self.ci_high},
            ]
        )

    def summary(self) -> str:
        """The table and a one-line verdict."""
        verdict = (
            "the candidate is better"
            if self.ci_low > 0
            else "the champion is better"
            if self.ci_high < 0
            else "no significant difference"
        )
        return (
            self.table().to_string(index=False, float_format=lambda v: f"{v:.4f}", na_rep="")
            + f"\n{self.model} {self.metric}: difference {self.difference:+.4f}, {self.level:.0%} bootstrap "
            f"interval [{self.ci_low:+.4f}, {self.ci_high:+.4f}] ({self.n_boot} resamples of {self.rows} "
            f"customers): {verdict}"
        )


def bootstrap_interval(
    n: int,
    statistic: Callable[[np.ndarray], np.ndarray],
    n_boot: int,
    level: float,
    seed: int,
    progress: bool = False,
    chunk: int = 100,
) -> tuple[float, float]:
    """Percentile interval of `statistic`, which maps a (resamples, n) matrix of row indices to one value per
    resample; resamples where it is NaN are skipped."""
    rng = np.random.default_rng(seed)
    sizes = [min(chunk, n_boot - s) for s in range(0, n_boot, chunk)]
    values = np.concatenate(
        [
            statistic(rng.integers(0, n, (size, n)))
            for size in tqdm(sizes, desc="bootstrap", unit="chunk", disable=not progress)
        ]
    )
    values = values[np.isfinite(values)]
    if len(values) == 0:
        raise ReportError("no bootstrap resample could be scored (a single class in every resample)")
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def roc_auc_rows(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """ROC-AUC of each row of (labels, scores) matrices (Mann-Whitney on tie-averaged ranks, as roc_auc_score);
    NaN for rows holding a single class."""
    ranks = rankdata(p, axis=1)
    n1 = y.sum(axis=1).astype(float)
    n0 = y.shape[1] - n1
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = ((ranks * y).sum(axis=1) - n1 * (n1 + 1) / 2) / (n1 * n0)
    return np.where((n1 > 0) & (n0 > 0), auc, np.nan)


def compare_churn(settings: Settings, progress: bool = False) -> Comparison:
    """ROC-AUC of the churn champion's and latest candidate's boosters on the workspace's test cutoff."""
    champion, candidate = champion_and_candidate(settings, "churn")
    frame = build.training_set(settings, [build.cutoff_plan(settings).test])
    y = frame["churned"].to_numpy(int)
    scores = []
    for run in (champion, candidate):
        model = ChurnModel.from_uri(f"models:/{run.name}/{run.version}", settings)
        missing = sorted(set(model.feature_name()) - set(frame.columns))
        if missing:
            raise ReportError(f"{run.name} v{run.version} needs features the current data lacks: {missing}")
        scores.append(model.raw_proba(frame))
    cfg = settings.reports

    def statistic(i: np.ndarray) -> np.ndarray:
        return roc_auc_rows(y[i], scores[1][i]) - roc_auc_rows(y[i], scores[0][i])

    low, high = bootstrap_interval(len(y), statistic, cfg.n_boot, cfg.ci_level, settings.seed, progress)
    return Comparison(
        "churn",
        "roc_auc",
        champion,
        candidate,
        float(roc_auc_score(y, scores[0])),
        float(roc_auc_score(y, scores[1])),
        low,
        high,
        cfg.ci_level,
        cfg.n_boot,
        len(y),
    )


def compare_recommender(settings: Settings, progress: bool = False) -> Comparison:
    """NDCG@K of the recommender champion's and latest candidate's parameters on the same holdout customers."""
    from patron.reports.recommender import evaluate_recommender_run

    champion, candidate = champion_and_candidate(settings, "recommender")
    evals = [evaluate_recommender_run(settings, run) for run in (champion, candidate)]
    if evals[0].k != evals[1].k:
        raise ReportError(f"champion and candidate were evaluated at different K ({evals[0].k} vs {evals[1].k})")
    both = (
        evals[0]
        .per_user[["customer_id", "ndcg"]]
        .merge(evals[1].per_user[["customer_id", "ndcg"]], on="customer_id", suffixes=("_champion", "_candidate"))
    )
    a, b = both["ndcg_champion"].to_numpy(), both["ndcg_candidate"].to_numpy()
    cfg = settings.reports
    low, high = bootstrap_interval(
        len(both), lambda i: b[i].mean(axis=1) - a[i].mean(axis=1), cfg.n_boot, cfg.ci_level, settings.seed, progress
    )
    return Comparison(
        "recommender",
        f"ndcg@{evals[0].k}",
        champion,
        candidate,
        float(a.mean()),
        float(b.mean()),
        low,
        high,
        cfg.ci_level,
        cfg.n_boot,
        len(both),
    )


def compare(settings: Settings, model: str, progress: bool = False) -> Comparison:
    """Champion vs latest candidate of 'churn' or 'recommender'."""
    runners = {"churn": compare_churn, "recommender": compare_recommender}
    if model not in runners:
        raise ReportError(f"model: expected one of {sorted(runners)}, got {model!r}")
    return runners[model](settings, progress)
