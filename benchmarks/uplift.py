"""`patron bench uplift`: the offer-uplift model on held-out customers of the synthetic retailer, against its truth.

The learner is fitted on training customers and chosen on validation customers; every figure is on test customers
(customer-disjoint). Observed: Qini coefficient and AUUC per offer type and for each row's best estimated offer.
Against the generator's true effects (reduction in P(churn) = -churn_prob_effect): rank correlation per offer type,
agreement on the best offer, and the value kept when a campaign reaches `uplift.target_share` of the test rows,
chosen by estimated uplift (each sent its best estimated offer) or by churn risk alone (all sent the offer with the
best observed effect among training customers), value = true reduction x `uplift.value_feature`.
One split's figures swing widely with the split (the experiment is small), so the whole fit, learner choice
included, is repeated on `uplift.bench_splits` customer splits and the medians and ranges are reported too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.datasets import prepare_dataset
from benchmarks.report import BenchReport
from features.tables.store import fingerprint
from patron.config import Settings
from training.mlops import tracking
from training.value.uplift import LEARNER_NAMES, UpliftFit, feature_matrix, fit_uplift
from training.value.uplift_data import CONTROL, LABEL, TREATMENT
from training.value.uplift_eval import effect_metrics, targeting_comparison

COLUMNS = ["qini", "auuc", "observed_ate", "truth_spearman", "treated", "retained_value", "vs_risk"]
TARGET_RATIO = 1.3


def true_reductions(settings: Settings, customer_ids: pd.Series, offer_types: list[str]) -> pd.DataFrame:
    """The generator's reduction in P(churn) per offer type for each row's customer (rows like customer_ids)."""
    path = settings.ground_truth_dir / "treatment_effects.parquet"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no ground truth (the uplift bench needs the synthetic retailer)")
    truth = pd.read_parquet(path, columns=["customer_id", "offer_type", "churn_prob_effect"])
    table = truth.pivot(index="customer_id", columns="offer_type", values="churn_prob_effect")
    out = -table.reindex(columns=offer_types).reindex(customer_ids.astype(str).to_numpy()).astype(float)
    if out.isna().any().any():
        raise ValueError("ground truth: some test customers or offer types have no true effect")
    return out.set_axis(customer_ids.index)


def best_observed_offer(rows: pd.DataFrame, offer_types: list[str]) -> str:
    """The offer type with the largest observed reduction in churn rate against control among these rows."""
    control = rows.loc[rows[TREATMENT] == CONTROL, LABEL].mean()
    return max(offer_types, key=lambda k: control - rows.loc[rows[TREATMENT] == k, LABEL].mean())


@dataclass
class SplitResult:
    """One customer split's fitted model and its figures on that split's test customers."""

    fit: UpliftFit
    estimates: pd.DataFrame
    observed: dict[str, float]
    truth: pd.DataFrame
    risk_offer: str
    weighted: dict[str, float]
    counted: dict[str, float]
    agreement: float


def evaluate_split(settings: Settings, fit: UpliftFit) -> SplitResult:
    """Observed uplift metrics and value kept under the true effects on the test customers of one split."""
    cfg, model, test = settings.uplift, fit.model, fit.rows("test")
    X = feature_matrix(test)
    if cfg.value_feature not in X:
        raise ValueError(f"uplift.value_feature: {cfg.value_feature!r} is not a customer feature")
    est, p_churn = model.effects(X), model.baseline(X).to_numpy()
    observed = effect_metrics(est, test[TREATMENT].to_numpy(), test[LABEL].to_numpy(int), cfg.qini_bins)
    truth = true_reductions(settings, test["customer_id"], model.offer_types)
    risk_offer = best_observed_offer(fit.rows("train"), model.offer_types)
    value = X[cfg.value_feature].astype(float).fillna(0.0).to_numpy()
    weighted = targeting_comparison(est, p_churn, truth, value, cfg.target_share, risk_offer, cfg.seed)
    counted = targeting_comparison(est, p_churn, truth, np.ones(len(value)), cfg.target_share, risk_offer, cfg.seed)
    agreement = float((est.to_numpy().argmax(1) == truth.to_numpy().argmax(1)).mean())
    return SplitResult(fit, est, observed, truth, risk_offer, weighted, counted, agreement)


def split_results(settings: Settings) -> list[SplitResult]:
    """The experiment built once, then fitted and evaluated on `uplift.bench_splits` customer splits."""
    cfg = settings.uplift
    first = fit_uplift(settings)
    results = [evaluate_split(settings, first)]
    frame = first.frame.drop(columns="split")
    for seed in range(cfg.seed + 1, cfg.seed + cfg.bench_splits):
        other = settings.model_copy(update={"uplift": cfg.model_copy(update={"seed": seed})})
        results.append(evaluate_split(other, fit_uplift(other, frame)))
    return results


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": float(np.median(values)), "min": float(np.min(values)), "max": float(np.max(values))}


def bench_uplift(settings: Settings) -> tuple[BenchReport, dict[str, float]]:
    """Fit, choose and evaluate the uplift model on the workspace's synthetic data; the table and flat metrics."""
    started = time.perf_counter()
    cfg = settings.uplift
    results = split_results(settings)
    main = results[0]
    fit, est, truth, model = main.fit, main.estimates, main.truth, main.fit.model
    test, observed, weighted, counted = fit.rows("test"), main.observed, main.weighted, main.counted
    arm, risk_offer = test[TREATMENT].to_numpy(), main.risk_offer
    name = LEARNER_NAMES[model.learner]
    rows = [
        {
            "model": f"{name}: {k}",
            "qini": observed[f"qini_{k}"],
            "auuc": observed[f"auuc_{k}"],
            "observed_ate": observed[f"ate_{k}"],
            "truth_spearman": float(est[k].corr(truth[k], method="spearman")),
            "treated": int((arm == k).sum()),
        }
        for k in model.offer_types
    ]
    rows.append(
        {
            "model": f"{name}: best estimated offer",
            "qini": observed["qini_best_offer"],
            "auuc": observed["auuc_best_offer"],
        }
    )
    share = f"top {cfg.target_share:.0%}"
    for label, res, unit in ((f"x {cfg.value_feature}", weighted, "value"), ("(customers, value 1)", counted, "n")):
        rows += [
            {
                "model": f"{share} by estimated uplift {label}, best estimated offer",
                "retained_value": res["uplift"],
                "vs_risk": res["ratio_uplift_to_risk"],
            },
            {
                "model": f"{share} by churn risk {label}, all sent {risk_offer}",
                "retained_value": res["risk"],
                "vs_risk": 1.0,
            },
            {"model": f"{share} at random, all sent {risk_offer} ({unit})", "retained_value": res["random"]},
            {"model": f"{share} by the true best effect {label} (oracle)", "retained_value": res["oracle"]},
        ]
    splits = {
        "value_ratio": [r.weighted["ratio_uplift_to_risk"] for r in results],
        "count_ratio": [r.counted["ratio_uplift_to_risk"] for r in results],
        "qini_best_offer": [r.observed["qini_best_offer"] for r in results],
        "best_offer_agreement": [r.agreement for r in results],
    }
    spread = {k: _spread(v) for k, v in splits.items()}
    n = len(results)
    rows += [
        {
            "model": f"median of {n} customer splits: {share} by estimated uplift x {cfg.value_feature}",
            "vs_risk": spread["value_ratio"]["median"],
        },
        {
            "model": f"median of {n} customer splits: {share} by estimated uplift (customers, value 1)",
            "vs_risk": spread["count_ratio"]["median"],
        },
        {"model": f"median of {n} customer splits: best estimated offer", "qini": spread["qini_best_offer"]["median"]},
    ]
    metrics = {
        **observed,
        **{f"valid_qini_{k}": v for k, v in fit.valid_qini.items()},
        "best_offer_agreement": main.agreement,
        **{f"value_{k}": v for k, v in weighted.items()},
        **{f"count_{k}": v for k, v in counted.items()},
        **{f"truth_spearman_{r['model'].split(': ')[1]}": r["truth_spearman"] for r in rows[: len(est.columns)]},
        **{f"splits_{k}_{stat}": v for k, d in spread.items() for stat, v in d.items()},
        "splits_meeting_target": float(sum(r >= TARGET_RATIO for r in splits["value_ratio"])),
    }
    verdict = "meets" if weighted["ratio_uplift_to_risk"] >= TARGET_RATIO else "misses"
    median_verdict = "meets" if spread["value_ratio"]["median"] >= TARGET_RATIO else "misses"
    positive_qini = sum(q > 0 for q in splits["qini_best_offer"])
    report = BenchReport(
        name="Uplift benchmark",
        dataset="synthetic",
        protocol={
            "campaign_days": fit.frame["cutoff"].nunique(),
            "experiment_rows": len(fit.frame),
            "test_rows": len(test),
            "test_customers": test["customer_id"].nunique(),
            "horizon_days": settings.features.horizon_days,
            "learner": model.learner,
            "target_share": cfg.target_share,
            "value": cfg.value_feature,
            "customer_splits": n,
        },
        columns=COLUMNS,
        rows=rows,
        fingerprint=fingerprint(fit.frame),
        summary=metrics,
        seeds={"synth": settings.seed, "uplift": cfg.seed, "uplift_splits": f"{cfg.seed}-{cfg.seed + n - 1}"},
        seconds=time.perf_counter() - started,
        notes=[
            f"the rows above the medians: the customer split of seed {cfg.seed}; the medians: the whole fit "
            f"(learner choice included) and evaluation repeated on {n} customer splits",
            "learner chosen on validation customers by mean Qini: "
            + ", ".join(f"{LEARNER_NAMES[k]} {v:.4f}" for k, v in fit.valid_qini.items())
            + "; on the other splits: "
            + ", ".join(LEARNER_NAMES[r.fit.model.learner] for r in results[1:]),
            f"agreement of the best estimated offer with the true best offer: {main.agreement:.3f} "
            f"(chance {1 / len(model.offer_types):.2f}); over the splits {_range(spread['best_offer_agreement'])}",
            f"value kept by uplift targeting / risk targeting: {weighted['ratio_uplift_to_risk']:.3f} "
            f"({verdict} the {TARGET_RATIO}x target); in customers kept: {counted['ratio_uplift_to_risk']:.3f}",
            f"over {n} customer splits, value kept / risk targeting: {_range(spread['value_ratio'])} "
            f"({median_verdict} the {TARGET_RATIO}x target on the median; "
            f"{int(metrics['splits_meeting_target'])} of {n} splits reach it); in customers kept: "
            f"{_range(spread['count_ratio'])}; best-offer Qini {_range(spread['qini_best_offer'], 4)}, "
            f"positive on {positive_qini} of {n}",
            "qini/auuc: retention outcome on test rows; observed_ate: retention difference treated - control; "
            "truth_spearman: rank correlation of estimated and true reduction in P(churn)",
        ],
    )
    return report, metrics


def _range(d: dict[str, float], digits: int = 3) -> str:
    return f"median {d['median']:.{digits}f} (min {d['min']:.{digits}f}, max {d['max']:.{digits}f})"


def run_uplift_bench(settings: Settings, echo: Callable[[str], None] = print) -> tuple[BenchReport, list[Path]]:
    """Prepare the synthetic bench workspace, run the bench, write uplift_bench.md/.json and log them as an MLflow run
    of that workspace (with the uplift section as params)."""
    bench = prepare_dataset(settings, "synthetic", echo)
    report, _ = bench_uplift(bench)
    return report, report.write(bench.workspace, "uplift_bench", bench, tracking.flat_params(bench.uplift, "uplift"))
