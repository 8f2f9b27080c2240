"""The two-stage pipeline's search on validation: Optuna TPE over its numbers, then backward elimination of its
sources, so that no source is kept that does not help."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
import pandas as pd

from patron import progress
from patron.config import SequenceConfig, TwoStageConfig
from training.mlops.metrics import dense_scorer, evaluate
from training.mlops.splits import Split, shift_back, targets
from training.recommend.candidates import SOURCES
from training.recommend.ranker_features import ItemInfo
from training.tune.two_stage_runs import LastRows, rank_with_seeds, two_stage_rows

TWO_STAGE_SPACE = {
    "sources": "every source enabled in config during the TPE trials; then backward elimination on validation (below)",
    "candidates_per_source": "int 50..200 log",
    "learning_rate": "0.005..0.2 log",
    "num_leaves": "int 3..63 log",
    "min_data_in_leaf": "int 5..200 log",
    "lambda_l2": "1e-3..100 log",
    "feature_fraction": "0.5..1",
}
RESCORE = (
    "the best TPE trials (recsys_bench.rescore_top) scored again with a fresh ranker seed; the one with the "
    "best mean of its two scores goes on (one run's ranker noise is as large as the differences between good "
    "trials, so the single best score is the luckiest draw)"
)
ELIMINATION = (
    "the chosen configuration's sources, weakest first (summed gain of their features in its ranker), "
    "each dropped unless validation NDCG@k without it falls below the best kept so far by more than the "
    "larger of recsys_bench.elimination_margin and recsys_bench.elimination_z standard deviations of a "
    "difference of means (the seeds' spread pooled over every configuration measured so far); the chosen "
    "configuration and every removal are measured with recsys_bench.elimination_seeds fresh ranker seeds "
    "fitted on the same rows (one seed's noise is as large as a weak source's gain); then up to "
    "recsys_bench.elimination_rechecks kept sources whose fall is inside the final margin (the first "
    "steps' noise estimate rests on two or three configurations) are tried once more, smallest fall "
    "first; with recsys_bench.elimination_ranker the LightGBM ranker is then tried the same way (without "
    "it, rank fusion of the kept sources); these runs count in the budget: the TPE gets the trials minus "
    "the rescored ones minus one per enabled source, one for the chosen configuration's own measurement, "
    "one per re-check and one for the ranker"
)
CANDIDATES_RANGE = {True: (50, 400), False: (50, 200)}  # with source switches / every source on (rows grow with it)


def enabled_sources(config: TwoStageConfig) -> list[str]:
    """The sources switched on in `config`, in SOURCES order."""
    return [s for s in SOURCES if getattr(config.sources, s)]


def without_source(config: TwoStageConfig, source: str) -> TwoStageConfig:
    """`config` with one source switched off."""
    return config.model_copy(update={"sources": config.sources.model_copy(update={source: False})})


RANKER = "ranker"  # the elimination's name for the LightGBM ranker (without it: rank fusion of the sources)


def without_part(config: TwoStageConfig, part: str) -> TwoStageConfig:
    """`config` without one source, or without the ranker (`RANKER`)."""
    return config.model_copy(update={"ranker": False}) if part == RANKER else without_source(config, part)


def two_stage_space(trial: optuna.Trial, base: TwoStageConfig, switch_sources: bool = True) -> TwoStageConfig:
    """A two-stage config drawn around `base` (the ranker's other settings kept); with `switch_sources`, each source
    `base` enables is also drawn on or off (at least one on), else all stay on."""
    on = (
        {s: trial.suggest_categorical(f"source_{s}", [True, False]) for s in enabled_sources(base)}
        if switch_sources
        else {}
    )
    if on and not any(on.values()):
        raise optuna.TrialPruned("no candidate source switched on")
    ranker = {
        **base.ranker_params,
        "learning_rate": trial.suggest_float("learning_rate", 0.005, 0.2, log=True),
        "num_leaves": trial.suggest_int("num_leaves", 3, 63, log=True),
        "min_data_in_leaf": trial.suggest_int("min_data_in_leaf", 5, 200, log=True),
        "lambda_l2": trial.suggest_float("lambda_l2", 1e-3, 100.0, log=True),
        "feature_fraction": trial.suggest_float("feature_fraction", 0.5, 1.0),
    }
    low, high = CANDIDATES_RANGE[switch_sources]
    return base.model_copy(
        update={
            "sources": base.sources.model_copy(update=on),
            "ranker_params": ranker,
            "candidates_per_source": trial.suggest_int("candidates_per_source", low, high, log=True),
        }
    )


def configured_two_stage(base: TwoStageConfig, switch_sources: bool = True) -> dict[str, Any]:
    """The configured pipeline as a trial of `two_stage_space`: every configured source on at the configured candidate
    count, with the configured ranker settings."""
    drawn = [k for k in TWO_STAGE_SPACE if k not in ("sources", "candidates_per_source")]
    return (
        ({f"source_{s}": True for s in enabled_sources(base)} if switch_sources else {})
        | {"candidates_per_source": base.candidates_per_source}
        | {k: base.ranker_params[k] for k in drawn if k in base.ranker_params}
    )


def source_gain(importance: dict[str, float], source: str) -> float:
    """The ranker's share of gain from one source's features (its score and rank)."""
    return sum(v for name, v in importance.items() if name.startswith(f"{source}_"))


@dataclass
class TwoStageSearch:
    """What the search chose, its validation NDCG and how it got there."""

    config: TwoStageConfig
    valid_ndcg: float
    tpe_trials: int
    elimination: list[dict[str, Any]] = field(default_factory=list)
    rescored: list[dict[str, Any]] = field(default_factory=list)

    @property
    def runs(self) -> int:
        """Configurations measured in all: the TPE trials, the rescored ones, the elimination's start and its
        removals."""
        return self.tpe_trials + len(self.rescored) + (len(self.elimination) + 1 if self.elimination else 0)


def rescore_best(
    study: optuna.Study, top: int, rescore: Callable[[optuna.trial.FrozenTrial], float]
) -> tuple[optuna.trial.FrozenTrial, float, list[dict[str, Any]]]:
    """Score the `top` best completed trials again (`rescore`: a fresh ranker seed) and pick the best mean of the two
    scores; returns that trial, its fresh score and one line per trial rescored."""
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    best = sorted(done, key=lambda t: -t.value)[: max(1, top)]
    lines = [{"trial": t.number, "valid_ndcg": t.value, "valid_ndcg_fresh_seed": rescore(t)} for t in best]
    for line in lines:
        line["mean"] = (line["valid_ndcg"] + line["valid_ndcg_fresh_seed"]) / 2
    chosen = max(range(len(best)), key=lambda j: lines[j]["mean"])  # ties: the better TPE score
    return best[chosen], lines[chosen]["valid_ndcg_fresh_seed"], lines


def mean_difference_sd(runs: list[list[float]]) -> float:
    """The standard deviation of the difference between two configurations' seed means, from the spread of the
    seeds' scores pooled over every configuration measured (0 where each has one seed)."""
    spread = [float(np.var(r, ddof=1)) for r in runs if len(r) > 1]
    return float(np.sqrt(np.mean(spread) * 2 / len(runs[0]))) if spread else 0.0


def eliminate_sources(
    config: TwoStageConfig,
    importance: dict[str, float],
    score: Callable[[TwoStageConfig], tuple[list[float], dict[str, float]]],
    margin: float = 0.0,
    z: float = 0.0,
    rechecks: int = 0,
    ranker: bool = False,
) -> tuple[TwoStageConfig, float, list[dict[str, Any]]]:
    """Score `config` (one validation score per ranker seed), then try each enabled source without it, weakest
    first; drop it unless the mean without it falls more than the larger of `margin` and `z` times the noise of a
    difference of means (`mean_difference_sd` over everything measured so far) below the best mean kept so far: a
    source must earn its place by more than the measurement's noise. Then up to `rechecks` kept sources whose fall
    is inside the final (settled) margin are tried once more, smallest fall first: the first steps' noise estimate
    rests on two or three configurations. With `ranker`, the ranker is tried last the same way (without it the kept
    sources are merged by rank fusion, which has no seed). Returns the kept config, its mean and one step per part
    tried."""
    runs = [score(config)[0]]
    value = best = float(np.mean(runs[0]))
    steps: list[dict[str, Any]] = []

    def try_without(part: str, recheck: bool) -> None:
        nonlocal config, value, best
        trial = without_part(config, part)
        runs.append(score(trial)[0])
        without, needed = float(np.mean(runs[-1])), max(margin, z * mean_difference_sd(runs))
        dropped = bool(without >= best - needed)
        gain = None if part == RANKER else round(source_gain(importance, part), 4)
        steps.append(
            {
                "source": part,
                "gain_share": gain,
                "valid_ndcg_with": value,
                "valid_ndcg_best": best,
                "valid_ndcg_without": without,
                "margin": needed,
                "without_per_seed": runs[-1],
                "recheck": recheck,
                "dropped": dropped,
            }
        )
        if dropped:
            config, value, best = trial, without, max(best, without)

    for source in sorted(enabled_sources(config), key=lambda s: source_gain(importance, s)):
        if len(enabled_sources(config)) == 1:
            break
        try_without(source, recheck=False)
    settled = max(margin, z * mean_difference_sd(runs))

    def fall(step: dict[str, Any]) -> float:
        return step["valid_ndcg_best"] - step["valid_ndcg_without"]

    early = sorted((s for s in steps if not s["dropped"] and s["margin"] < settled and fall(s) < settled), key=fall)
    for step in early[:rechecks]:
        if len(enabled_sources(config)) > 1:
            try_without(step["source"], recheck=True)
    if ranker and config.ranker:
        try_without(RANKER, recheck=False)
    return config, value, steps


def tune_two_stage(
    split: Split,
    items: ItemInfo,
    base: TwoStageConfig,
    peer_params: dict[str, dict[str, Any]],
    trials: int,
    seed: int,
    k: int,
    cold: np.ndarray,
    sequence: SequenceConfig | None = None,
    browsing: pd.DataFrame | None = None,
    margin: float = 0.0,
    rescore_top: int = 1,
    elimination_seeds: int = 1,
    elimination_z: float = 0.0,
    elimination_rechecks: int = 0,
    elimination_ranker: bool = False,
) -> TwoStageSearch:
    """Optuna TPE over candidates and ranker settings with every configured source on (the first trial the
    configured pipeline), the `rescore_top` best trials scored again with a fresh ranker seed (`rescore_best`), then
    backward elimination of the sources and the ranker (`margin`, `elimination_z`, `elimination_rechecks`,
    `elimination_ranker` as in `eliminate_sources`; each configuration measured with `elimination_seeds` fresh
    ranker seeds), all on validation NDCG@k with the test never read: the pipeline runs one period earlier (ranker
    labels from the end of train, sources fit before it, validation ranked). `trials` configurations in all (at
    least one TPE trial)."""
    inner = shift_back(split)
    labels = targets(inner, inner.valid, inner.matrix(inner.train))
    seen = split.matrix(split.train)
    valid = targets(split, split.valid, seen)

    rows_of = LastRows(
        lambda config: two_stage_rows(
            inner.train, labels, split.train, valid, split.shape, items, config, peer_params, seed, sequence, browsing
        )
    )

    def score(config: TwoStageConfig, seeds: list[int]) -> tuple[list[float], dict[str, float]]:
        """Validation NDCG@k per ranker seed, the rankers fitted on the same rows; the first seed's feature gains."""
        results = rank_with_seeds(rows_of(config), config, seeds)
        ndcg = [
            evaluate(dense_scorer(r.scorer_scores, valid), seen, seen, valid, k, cold)[f"ndcg@{k}"] for r in results
        ]
        return ndcg, results[0].feature_importance

    def objective(trial: optuna.Trial) -> float:
        config = two_stage_space(trial, base, switch_sources=False)
        value, importance = score(config, [config.seed])
        trial.set_user_attr("importance", importance)
        return value[0]

    fresh = [base.seed + 1 + j for j in range(max(1, elimination_seeds))]  # never the TPE's own seed
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    # first trial: the configured pipeline (every source it enables, its candidate count and ranker settings)
    study.enqueue_trial(configured_two_stage(base, switch_sources=False))
    n_sources = len(enabled_sources(base))
    later = rescore_top + (
        n_sources + 1 + elimination_rechecks + int(elimination_ranker and base.ranker) if n_sources > 1 else 0
    )  # the runs after the TPE
    study.optimize(objective, n_trials=max(1, trials - later), show_progress_bar=progress.enabled())
    # The best trial's own score is the highest of many (biased upwards): the best few are measured again with a
    # fresh ranker seed, and the elimination measures its start and every removal with fresh seeds.
    chosen, rescored, lines = rescore_best(
        study, rescore_top, lambda t: score(two_stage_space(t, base, switch_sources=False), fresh[:1])[0][0]
    )
    best = two_stage_space(chosen, base, switch_sources=False)
    if n_sources == 1:
        return TwoStageSearch(best, rescored, len(study.trials), rescored=lines)
    importance = chosen.user_attrs.get("importance", {})
    config, value, steps = eliminate_sources(
        best, importance, lambda c: score(c, fresh), margin, elimination_z, elimination_rechecks, elimination_ranker
    )
    return TwoStageSearch(config, value, len(study.trials), steps, lines)
