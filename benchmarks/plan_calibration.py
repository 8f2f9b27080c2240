"""`patron bench plan-calibration`: is the retention plan's promise honest? Expected against realised net value of
the plan (serving/answers/retention_plan.py::plan_vs_truth's procedure) with the uplift model's raw and calibrated
effects (training/value/uplift_calibration.py), over several uplift seeds (customer splits and LightGBM seeds).

The workspace is a synthetic retailer with its churn and CLV models registered (`patron demo --no-serve`); the
uplift model is refitted here per seed, not registered. Also reported: the experiment's observed effect of an offer on
the churn label (control minus treated churn rate, all offers pooled) beside the generator's mean
`churn_prob_effect` of the same treated customers: the truth the realised value is measured with.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.report import BenchReport, events_fingerprint
from patron.config import Settings
from training.value.uplift_data import CONTROL, LABEL, TREATMENT

COLUMNS = [
    "seed",
    "learner",
    "slope",
    "effects",
    "budget",
    "customers",
    "expected",
    "realised",
    "expected_over_realised",
]


def observed_vs_generator(frame: pd.DataFrame, truth: pd.DataFrame) -> dict[str, float]:
    """Pooled observed effect on the churn label (with its standard error) and the generator's mean effect."""
    tau = truth.pivot(index="customer_id", columns="offer_type", values="churn_prob_effect").astype(float).mul(-1)
    treated, control = frame[frame[TREATMENT] != CONTROL], frame[frame[TREATMENT] == CONTROL]
    pt, pc = treated[LABEL].mean(), control[LABEL].mean()
    se = float(np.sqrt(pt * (1 - pt) / len(treated) + pc * (1 - pc) / len(control)))
    stacked = tau.stack()
    keys = pd.MultiIndex.from_arrays([treated["customer_id"].astype(str), treated[TREATMENT].astype(str)])
    return {
        "observed_effect": float(pc - pt),
        "observed_effect_se": se,
        "generator_effect": float(stacked.reindex(keys).mean()),
        "treated_rows": len(treated),
    }


def bench_plan_calibration(
    settings: Settings, seeds: Sequence[int], budgets: Sequence[float], echo: Callable[[str], None] = print
) -> BenchReport:
    """One row per seed, effects (raw, calibrated) and budget."""
    from features.pit.build import customer_features, data_end
    from serving.answers.retention_plan import load_customer_value, plan_for, realised_value
    from serving.champions.load import load_churn_champion
    from training.value.uplift import fit_uplift

    started = time.perf_counter()
    path = settings.ground_truth_dir / "treatment_effects.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the plan can be checked on synthetic data only")
    truth = pd.read_parquet(path)
    cutoff = data_end(settings)
    features = customer_features(settings, cutoff)
    value = load_customer_value(settings, features, cutoff)
    booster, _ = load_churn_champion(settings)
    active = features[features["customer_id"].astype(str).isin(value.active)]
    ids = features["customer_id"].astype(str).to_numpy()
    rows, frame = [], None
    for seed in seeds:
        uplift = settings.uplift.model_copy(update={"calibrate_effects": True, "seed": int(seed)})
        fit = fit_uplift(settings.model_copy(update={"uplift": uplift}), frame)
        frame = fit.frame.drop(columns="split")  # the experiment is built once
        model = fit.model
        for name, effects in (("raw", model.raw_effects(features)), ("calibrated", model.effects(features))):
            customer_value = dataclasses.replace(value, effects=effects.set_axis(ids, axis=0))
            for budget in budgets:
                plan = plan_for(settings, booster, active, customer_value, None, float(budget), None)
                expected, realised = plan.allocation.value, realised_value(plan.rows, truth)
                rows.append(
                    {
                        "seed": int(seed),
                        "learner": model.learner,
                        "slope": ", ".join(f"{v:.2f}" for v in model.calibration.slope.values()),
                        "effects": name,
                        "budget": float(budget),
                        "customers": len(plan.rows),
                        "expected": expected,
                        "realised": realised,
                        "expected_over_realised": expected / realised if realised else float("nan"),
                    }
                )
                echo(f"seed {seed} {name} budget {budget:g}: expected {expected:,.0f}, realised {realised:,.0f}")
    within = {
        name: sum(
            all(0.8 <= r["expected_over_realised"] <= 1.2 for r in rows if r["seed"] == s and r["effects"] == name)
            for s in seeds
        )
        for name in ("raw", "calibrated")
    }
    summary = {**observed_vs_generator(frame, truth), **{f"seeds_within_20pct_{k}": v for k, v in within.items()}}
    return BenchReport(
        name="plan-calibration",
        dataset=str(settings.workspace),
        protocol={"budgets": list(budgets), "offers": settings.retention.offers, "cutoff": str(cutoff.date())},
        columns=COLUMNS[1:],
        rows=[{**r, "model": f"seed {r['seed']}, {r['effects']}, budget {r['budget']:g}"} for r in rows],
        fingerprint=events_fingerprint(settings),
        seeds={"uplift": list(seeds)},
        seconds=time.perf_counter() - started,
        summary=summary,
        notes=[
            "expected = the models' CLV x tau - cost of the plan; realised = the same CLV x the generator's "
            "churn_prob_effect - cost; target: expected within 20% of realised at every budget"
        ],
    )


def run_plan_calibration(
    settings: Settings, seeds: Sequence[int], budgets: Sequence[float], echo: Callable[[str], None] = print
) -> tuple[BenchReport, list[Path]]:
    """Run the bench on the workspace and write WORKSPACE/bench/plan_calibration_bench.{md,json} (MLflow run)."""
    report = bench_plan_calibration(settings, seeds, budgets, echo)
    return report, report.write(settings.workspace / "bench", "plan_calibration_bench", settings)
