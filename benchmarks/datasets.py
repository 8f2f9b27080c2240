"""The table benchmarks' datasets (CDNOW, the synthetic retailer), each ingested into its own bench workspace."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from features.tables.store import read_table
from patron.config import BenchConfig, Settings

DATASETS = ("cdnow", "synthetic")


def bench_settings(settings: Settings, dataset: str) -> Settings:
    """The same settings with the workspace moved to WORKSPACE/bench/<dataset>."""
    if dataset not in DATASETS:
        raise ValueError(f"dataset {dataset!r}: choose one of {', '.join(DATASETS)}")
    return settings.model_copy(update={"workspace": settings.workspace / "bench" / dataset})


def prepare_dataset(settings: Settings, dataset: str, echo: Callable[[str], None] = print) -> Settings:
    """Bench workspace with the dataset's tables ingested (obtained or simulated on first use)."""
    from features.ingest.pipeline import ingest_source

    bench = bench_settings(settings, dataset)
    if read_table(bench.tables_dir, "events", columns=["event_id"]) is not None:
        return bench
    if dataset == "cdnow":
        from features.ingest.download import get_dataset

        path = get_dataset("cdnow", bench, echo).parent
    else:
        from features.synthetic.generate import generate

        echo(generate(bench).summary())
        path = None
    report = ingest_source(bench, dataset, path=path)
    echo(f"ingested {dataset} into {bench.tables_dir} in {report.seconds:.1f} s")
    return bench


def cdnow_cutoff(lines: pd.DataFrame, cfg: BenchConfig) -> pd.Timestamp:
    """CDNOW's cutoff: the end of the calibration period (39 weeks) after the first purchase day."""
    return lines["ts"].min().normalize() + pd.Timedelta(days=cfg.cdnow_calibration_days)
