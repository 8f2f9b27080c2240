"""The recommender bench's peers: each tuned by Optuna TPE on validation NDCG@k, and the table's row type."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
import pandas as pd

from patron import progress
from training.mlops.metrics import evaluate
from training.mlops.splits import Split, targets
from training.recommend.candidates import browsing_before, with_browsing
from training.recommend.peers import PEERS, make_peer

BROWSING_WEIGHT_RANGE = (0.03, 1.0)


@dataclass
class Row:
    """One line of the table."""

    model: str
    test: dict[str, float]
    valid_ndcg: float | None = None
    params: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    note: str = ""

    def as_row(self) -> dict[str, Any]:
        """The line as a report row: model, validation NDCG, the test metrics, seconds, note and parameters."""
        return {
            "model": self.model,
            "valid_ndcg": self.valid_ndcg,
            **self.test,
            "seconds": round(self.seconds),
            "note": self.note,
            "params": self.params,
        }


def tune_peer(
    name: str,
    split: Split,
    trials: int,
    seed: int,
    k: int,
    threads: int,
    cold: np.ndarray,
    browsing: pd.DataFrame | None = None,
) -> tuple[dict[str, Any], float, int]:
    """Optuna TPE on validation NDCG@k (fit on train); returns best params, best value and trials run. With
    `browsing`, the peer also learns from the browsed items before each customer's last purchase, at a weight
    searched with its own parameters (`browsing_weight`)."""
    train = split.matrix(split.train)
    valid = targets(split, split.valid, train)
    browsed = None if browsing is None else browsing_before(browsing, split.train, split.shape)

    def objective(trial: optuna.Trial) -> float:
        params = PEERS[name].space(trial)
        fit_on = (
            train
            if browsed is None
            else with_browsing(train, browsed, trial.suggest_float("browsing_weight", *BROWSING_WEIGHT_RANGE, log=True))
        )
        peer = make_peer(name, params, seed, threads).fit(fit_on)
        return evaluate(peer.score, fit_on, train, valid, k, cold)[f"ndcg@{k}"]

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(
        objective, n_trials=1 if not PEERS[name].space_text else trials, show_progress_bar=progress.enabled()
    )
    return dict(study.best_params), float(study.best_value), len(study.trials)
