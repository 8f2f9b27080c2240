"""`patron bench campaign`: does a campaign's readout find the offers' true effect?

On a synthetic retailer of `campaign_bench.customers` (WORKSPACE/bench/campaign, simulated and its churn, CLV and
uplift models trained and promoted on first use): the retention plan (any budget, at most the largest size of
customers), and for each campaign size its best `size` customers by expected net value. Each repetition r draws the
holdout with seed Settings.seed + first_repetition + r, plays the outcome window forward with the generator's true
offer effects (features/synthetic/campaign_play.py, same seed) and reads the campaign out. Coverage: the share of
repetitions in which the 95% interval of incremental retention holds the true mean effect of the customers it is about
(both arms: what a randomised difference estimates), for the whole campaign, each offer type alone, and every offer
type at once; offers with too few customers for a verdict are left out.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pandas as pd

from benchmarks.report import BenchReport, Table, events_fingerprint
from features.synthetic.campaign_play import play_forward, truth_inputs
from features.tables.store import read_table
from patron.config import Settings
from training.value.campaign_readout import ReadoutSettings, outcomes_from, readout
from training.value.holdout import assign_arms, segment_of

COLUMNS = [
    "repetitions",
    "covered",
    "coverage",
    "offers_covered",
    "customers",
    "treated",
    "true_effect_pts",
    "effect_pts",
    "ci_width_pts",
]
OFFER_COLUMNS = ["repetitions", "covered", "customers", "true_effect_pts", "effect_pts", "ci_width_pts"]
MODELS = ("churn", "clv", "uplift")
OVERALL = "all offers"


def bench_workspace(settings: Settings, echo: Callable[[str], None]) -> Settings:
    """WORKSPACE/bench/campaign with the retailer simulated and its three models trained and promoted (once)."""
    from features.ingest.pipeline import ingest_source
    from features.synthetic.generate import generate
    from training.mlops.registry import promote

    cfg = settings.campaign_bench
    bench = settings.model_copy(update={"workspace": settings.workspace / "bench" / "campaign"})
    bench = bench.model_copy(update={"synth": bench.synth.model_copy(update={"customers": cfg.customers})})
    if read_table(bench.tables_dir, "events", columns=["event_id"]) is None:
        echo(generate(bench).summary())
        echo(f"ingested in {ingest_source(bench, 'synthetic').seconds:.1f} s")
    marker = bench.workspace / "bench_models_promoted"
    if not marker.exists():
        from training.churn.train import train_churn
        from training.value.clv import train_clv
        from training.value.uplift import train_uplift

        for name, train in zip(MODELS, (train_churn, train_clv, train_uplift), strict=True):
            started = time.perf_counter()
            train(bench)
            echo(f"{promote(bench, name, force=True).message} ({time.perf_counter() - started:.0f} s)")
        marker.write_text("churn, clv and uplift trained and promoted\n")
    return bench


def repetition(
    rows: pd.DataFrame,
    customers: pd.DataFrame,
    effects: pd.DataFrame,
    start: pd.Timestamp,
    settings: Settings,
    window: int,
    seed: int,
) -> pd.DataFrame:
    """One holdout draw, simulated outcome and readout: per offer type its estimate, interval and true effect."""
    cfg = settings.campaign_bench
    rows = rows.assign(arm=assign_arms(rows, cfg.holdout, seed).to_numpy())
    assigned = rows[["customer_id", "arm", "offer_type"]].merge(effects, on=["customer_id", "offer_type"])
    mine = customers[customers["customer_id"].isin(set(rows["customer_id"]))]
    rng = np.random.default_rng([seed, 27])
    played = play_forward(
        mine, assigned, start, window, settings.synth.offer_effect_days, settings.synth.campaign_redemption, rng
    )
    purchases = played.purchases.assign(value=1.0)
    frame = outcomes_from(rows, purchases[["customer_id", "ts", "value"]], set(played.redeemed["customer_id"]))
    c = settings.campaign
    result = readout(frame, ReadoutSettings(c.confidence, c.bootstrap, c.min_arm_customers, seed))
    truth = played.truth.groupby("offer_type")["true_effect"].mean() * 100
    truth[OVERALL] = played.truth["true_effect"].mean() * 100
    out = []
    for g in [{**result["overall"][0], "offer_type": OVERALL}, *result["by_offer"]]:
        if min(g["treatment"], g["holdout"]) < c.min_arm_customers:
            continue
        low, high = g["retained"]["ci"]
        true = float(truth[g["offer_type"]])
        out.append(
            {
                "offer_type": g["offer_type"],
                "customers": g["treatment"] + g["holdout"],
                "treated": g["treatment"],
                "true_effect_pts": true,
                "effect_pts": g["retained"]["effect"],
                "ci_width_pts": high - low,
                "covered": low <= true <= high,
            }
        )
    return pd.DataFrame(out)


def run_campaign_bench(settings: Settings, echo: Callable[[str], None] = print) -> tuple[BenchReport, list]:
    """The coverage and interval widths per campaign size; Markdown + JSON under WORKSPACE/bench, logged to MLflow."""
    from features.pit.cutoffs import data_end
    from serving.answers.retention_plan import workspace_plan

    started = time.perf_counter()
    cfg = settings.campaign_bench
    bench = bench_workspace(settings, echo)
    plan = workspace_plan(bench, budget=1e12, max_customers=max(cfg.sizes))
    rows = plan.rows.sort_values(["expected_net_value", "customer_id"], ascending=[False, True], ignore_index=True)
    rows = rows.assign(segment=segment_of(rows))
    echo(plan.summary())
    start = data_end(bench)
    window = settings.campaign.outcome_days or settings.features.horizon_days
    customers, effects = truth_inputs(bench, rows.assign(arm="treatment"), start)
    effects = effects[["customer_id", "offer_type", "log_hazard_effect"]]
    report_rows, offer_rows, details = [], [], {}
    for size in cfg.sizes:
        top = rows.head(size)
        reps = []
        first = settings.seed + cfg.first_repetition
        for r in range(cfg.repetitions):
            one = repetition(top, customers, effects, start, bench, window, first + r)
            reps.append(one.assign(repetition=r))
        per = pd.concat(reps, ignore_index=True)
        overall, offers = per[per["offer_type"] == OVERALL], per[per["offer_type"] != OVERALL]
        covered = offers.groupby("repetition")["covered"].all()
        label = f"{len(top)} customers"
        report_rows.append(
            {
                "campaign": label,
                "repetitions": cfg.repetitions,
                "covered": int(overall["covered"].sum()),
                "coverage": float(overall["covered"].mean()),
                "offers_covered": int(covered.sum()),
                "customers": len(top),
                "treated": float(overall["treated"].median()),
                "true_effect_pts": float(overall["true_effect_pts"].median()),
                "effect_pts": float(overall["effect_pts"].median()),
                "ci_width_pts": float(overall["ci_width_pts"].median()),
            }
        )
        details[label] = per.to_dict(orient="records")
        for offer, part in offers.groupby("offer_type"):
            offer_rows.append(
                {
                    "offer": f"{offer}, {label}",
                    "repetitions": len(part),
                    "covered": int(part["covered"].sum()),
                    "customers": float(part["customers"].median()),
                    "true_effect_pts": float(part["true_effect_pts"].median()),
                    "effect_pts": float(part["effect_pts"].median()),
                    "ci_width_pts": float(part["ci_width_pts"].median()),
                }
            )
        echo(
            f"{label}: the campaign's interval held its true effect in {int(overall['covered'].sum())} of "
            f"{cfg.repetitions} repetitions, every offer's at once in {int(covered.sum())}"
        )
    report = BenchReport(
        name="Campaign readout benchmark",
        dataset="synthetic",
        protocol={
            "retailer_customers": cfg.customers,
            "plan_customers": len(rows),
            "offers": rows["offer_type"].value_counts().to_dict(),
            "holdout": cfg.holdout,
            "outcome_days": window,
            "confidence": settings.campaign.confidence,
            "bootstrap": settings.campaign.bootstrap,
            "min_arm_customers": settings.campaign.min_arm_customers,
        },
        columns=COLUMNS,
        rows=report_rows,
        fingerprint=events_fingerprint(bench),
        seeds={"repetitions": f"{first} .. {first + cfg.repetitions - 1}"},
        seconds=time.perf_counter() - started,
        label="campaign",
        details=details,
        tables={"by_offer": Table("Per offer type", OFFER_COLUMNS, offer_rows, "offer")},
        notes=[
            "covered: repetitions in which the 95% interval (Newcombe's score interval) of the campaign's incremental "
            "retention held the true mean effect of its customers; offers_covered: repetitions in which every "
            "offer's interval held its offer's true effect at once; per offer type below; effects and widths are "
            "medians over repetitions",
        ],
    )
    paths = report.write(settings.workspace / "bench", "campaign_bench", settings)
    return report, paths
