"""`patron bench clv`: Patron's CLV model vs BG/NBD + Gamma-Gamma (lifetimes) by customer-disjoint cross-validation
at one cutoff, on the same customers and target (CDNOW: the 39-week calibration's end and its 39-week holdout)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.datasets import cdnow_cutoff, prepare_dataset
from benchmarks.report import BenchReport
from features.pit.purchase_sequence import purchases
from features.tables.store import fingerprint
from patron.config import Settings
from training.value.clv import TARGET, clv_frame, clv_metrics, cross_validated_clv, evaluation_cutoff

COLUMNS = ["mae", "rmse", "spearman", "top10_revenue_share", "top20_revenue_share", "predicted_total_ratio"]


def bench_clv(settings: Settings, dataset: str) -> BenchReport:
    """Patron's CLV vs BG/NBD + Gamma-Gamma by customer-disjoint CV at one cutoff, same customers and target."""
    started = time.perf_counter()
    lines = purchases(settings)
    if dataset == "cdnow":
        horizon = settings.bench.cdnow_holdout_days
        cutoff = cdnow_cutoff(lines, settings.bench)
    else:
        horizon = settings.clv.horizon_days
        cutoff = evaluation_cutoff(settings, lines, horizon)
    frame = clv_frame(settings, cutoff, horizon, lines)
    patron, classic = cross_validated_clv(settings, frame, lines, cutoff, horizon)
    actual = frame[TARGET].to_numpy(float)
    rows = [
        {"model": f"Patron (LightGBM, {settings.clv.folds}-fold CV)", **clv_metrics(actual, patron)},
        {"model": "BG/NBD + Gamma-Gamma (lifetimes)", **clv_metrics(actual, classic)},
    ]
    return BenchReport(
        name="CLV benchmark",
        dataset=dataset,
        protocol={
            "cutoff": cutoff.date().isoformat(),
            "horizon_days": horizon,
            "customers": len(actual),
            "actual_total": round(float(actual.sum()), 2),
            "folds": settings.clv.folds,
            "btyd_freq": settings.clv.btyd_freq,
            "objective": settings.clv.params.get("objective"),
        },
        columns=COLUMNS,
        rows=rows,
        fingerprint=fingerprint(frame),
        seeds={"clv": settings.clv.seed, "bench": settings.bench.seed},
        seconds=time.perf_counter() - started,
        notes=[
            "target: actual spend in [cutoff, cutoff + horizon); customers: everyone with a purchase before it",
            "Patron's features include the BG/NBD and Gamma-Gamma outputs fitted on the training fold",
        ],
    )


def run_clv_bench(
    settings: Settings, dataset: str, echo: Callable[[str], None] = print
) -> tuple[BenchReport, list[Path]]:
    """Prepare the dataset's bench workspace, run the CLV comparison, write clv_bench.md/.json there and log them as
    an MLflow run of that workspace."""
    bench = prepare_dataset(settings, dataset, echo)
    report = bench_clv(bench, dataset)
    return report, report.write(bench.workspace, "clv_bench", bench)
