"""The embedded synthetic retailer: simulate customers chunk by chunk, write contract tables and ground truth."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from features.synthetic.oracle import (  # noqa: F401  (re-exported)
    PARAMS_FILE,
    campaigns_from,
    churn_rates,
    observed_labels,
    oracle_churn_probability,
)
from features.synthetic.simulator import PURCHASE, simulate
from features.synthetic.tables import (
    SCHEMAS,
    Clock,
    Recorder,
    category_names,
    chunk_tables,
    customer_ids,
    customer_tables,
    item_ids,
    products_table,
)
from features.synthetic.world import DEPARTMENTS, NEVER, Catalog, Dynamics, Population, build_catalog, build_population
from features.tables.contract import CHANNELS, OFFER_TYPES
from features.tables.store import write_json
from patron.config import Settings

CONTRACT_TABLES = ("customers", "products", "events", "tickets", "surveys", "loyalty", "offers", "consent")


@dataclass
class SynthReport:
    """What `generate` wrote, how long it took and the churn figures at the test cutoff."""

    out: Path
    truth_dir: Path
    customers: int
    items: int
    days: int
    seed: int
    seconds: float
    rows: dict[str, int] = field(default_factory=dict)
    cutoff: date | None = None
    active: int = 0
    label_rate: float = float("nan")
    truth_rate: float = float("nan")

    def summary(self) -> str:
        """Human-readable report."""
        lines = [
            f"synthetic retailer: {self.customers} customers, {self.items} items, {self.days} days, "
            f"seed {self.seed}, {self.seconds:.1f} s",
            f"tables -> {self.out}",
        ]
        lines += [f"  {name:<10} {n:>12,} rows" for name, n in self.rows.items()]
        lines.append(f"ground truth -> {self.truth_dir}")
        if self.cutoff is not None:
            lines.append(
                f"at test cutoff {self.cutoff}: {self.active:,} active customers, churn label rate "
                f"{self.label_rate:.3f}, true dropout rate {self.truth_rate:.3f}"
            )
        return "\n".join(lines)


class _Writers:
    """One Parquet file per table, a row group per chunk, moved into place only when complete."""

    def __init__(self, paths: dict[str, Path], schemas: dict[str, pa.Schema]) -> None:
        self.paths, self.schemas, self.rows = paths, schemas, dict.fromkeys(paths, 0)
        self.tmp = {k: p.with_name(f".{p.name}.tmp") for k, p in paths.items()}
        self.writers: dict[str, pq.ParquetWriter] = {}

    def write(self, name: str, table: pa.Table | list[pa.Table]) -> None:
        if isinstance(table, list):
            for part in table:
                self.write(name, part)
            return
        if name not in self.writers:
            self.tmp[name].parent.mkdir(parents=True, exist_ok=True)
            self.writers[name] = pq.ParquetWriter(self.tmp[name], self.schemas[name])
        self.writers[name].write_table(table)
        self.rows[name] += table.num_rows

    def commit(self) -> None:
        for name, w in self.writers.items():
            w.close()
            os.replace(self.tmp[name], self.paths[name])

    def abort(self) -> None:
        for name, w in self.writers.items():
            w.close()
            self.tmp[name].unlink(missing_ok=True)


def generate(
    settings: Settings,
    customers: int | None = None,
    items: int | None = None,
    days: int | None = None,
    seed: int | None = None,
    out: Path | None = None,
) -> SynthReport:
    """Simulate a retailer and write every contract table to `out` and the ground truth beside the workspace."""
    started = time.perf_counter()
    cfg = settings.synth
    n, m, n_days = (
        cfg_value if value is None else value
        for value, cfg_value in ((customers, cfg.customers), (items, cfg.items), (days, cfg.days))
    )
    seed = settings.seed if seed is None else seed
    for name, value, low in (("customers", n, 1), ("items", m, 20), ("days", n_days, 2)):
        if value < low:
            raise ValueError(f"{name} must be at least {low}, got {value}")
    out = Path(out or settings.raw_dir / "synthetic")
    truth = settings.ground_truth_dir
    dyn, clock, camp = Dynamics(), Clock(cfg.start_date), campaigns_from(settings)
    cat = build_catalog(m, n_days, seed, dyn)
    truth_schemas = _truth_schemas()
    paths = {t: out / f"{t}.parquet" for t in CONTRACT_TABLES}
    paths.update({t: truth / f"{t}.parquet" for t in truth_schemas})
    writers = _Writers(paths, {**SCHEMAS, **truth_schemas})
    fo = settings.features
    t_test = n_days - fo.test_cutoff_days_before_end
    offsets = {"events": 0, "tickets": 0, "offers": 0, "orders": 0}
    active = churned = dropped = 0
    try:
        writers.write("products", products_table(cat, clock))
        for chunk, first in enumerate(range(0, n, cfg.chunk_customers)):
            pop = build_population(min(cfg.chunk_customers, n - first), cat, n_days, seed, chunk, dyn)
            rec = Recorder(pop, np.random.default_rng([seed, 3, chunk]), dyn)
            sim = simulate(cat, pop, dyn, camp, seed, chunk, n_days, rec)
            if n_days % 7:
                rec.flush_week(n_days - n_days % 7)
            if t_test > 0:
                ev = [e for e in rec.events if np.all(e[4] == PURCHASE)]
                pc_, pday = (np.concatenate([e[i] for e in ev]) if ev else np.zeros(0, int) for i in (0, 1))
                a, c = observed_labels(pc_, pday, len(pop.rate), t_test, fo.lookback_days, fo.horizon_days)
                active += a.sum()
                churned += c[a].sum()
                dropped += (sim.st.dropout_day[a] < t_test + fo.horizon_days).sum()
            tables = chunk_tables(rec, sim.st, first, offsets, clock, settings.retention.offers, n_days)
            tables.update(customer_tables(pop, sim.st, first, clock))
            tables.update(_truth_tables(pop, sim.st, cat, first, clock, dyn, camp.effect_days))
            for name, table in tables.items():
                writers.write(name, table)
            offsets["events"] += sum(t.num_rows for t in tables["events"])
            for key in ("tickets", "offers"):
                offsets[key] += tables[key].num_rows
            offsets["orders"] += rec.orders
            del rec, sim, tables
        writers.write("complements", _complements(cat))
        writers.write("categories", _categories(cat))
        writers.commit()
    except BaseException:
        writers.abort()
        raise
    write_json(
        {
            "customers": n,
            "items": m,
            "days": n_days,
            "seed": seed,
            "start_date": cfg.start_date,
            "chunk_customers": cfg.chunk_customers,
            "out": str(out.resolve()),
        },
        truth / PARAMS_FILE,
    )
    report = SynthReport(
        out, truth, n, m, n_days, seed, time.perf_counter() - started, {t: writers.rows[t] for t in CONTRACT_TABLES}
    )
    if t_test > 0 and active:
        report.cutoff = cfg.start_date + timedelta(days=t_test)
        report.active, report.label_rate, report.truth_rate = int(active), churned / active, dropped / active
    return report


def _truth_schemas() -> dict[str, pa.Schema]:
    ts = pa.timestamp("ns")
    return {
        "customers_truth": pa.schema(
            [
                ("customer_id", pa.string()),
                ("signup_date", ts),
                ("session_rate", pa.float64()),
                ("purchase_rate", pa.float64()),
                ("price_sensitivity", pa.float64()),
                ("preferred_channel", pa.string()),
                ("base_hazard", pa.float64()),
                ("mood", pa.float64()),
                ("churn_date", ts),
            ]
        ),
        "taste": pa.schema([("customer_id", pa.string()), ("category", pa.string()), ("weight", pa.float32())]),
        "treatment_effects": pa.schema(
            [
                ("customer_id", pa.string()),
                ("offer_type", pa.string()),
                ("log_hazard_effect", pa.float32()),
                ("churn_prob_effect", pa.float32()),
            ]
        ),
        "hazard_weekly": pa.schema([("customer_id", pa.string()), ("week_start", ts), ("hazard", pa.float32())]),
        "complements": pa.schema([("item_id", pa.string()), ("complement_item_id", pa.string())]),
        "categories": pa.schema(
            [
                ("category", pa.string()),
                ("department", pa.string()),
                ("consumable", pa.bool_()),
                ("cycle_days", pa.int64()),
                ("return_rate", pa.float64()),
                ("quality_rate", pa.float64()),
            ]
        ),
    }


def _truth_tables(
    pop: Population, st, cat: Catalog, first: int, clock: Clock, dyn: Dynamics, effect_days: int
) -> dict[str, pa.Table]:
    n = len(pop.rate)
    schemas = _truth_schemas()
    cid = customer_ids(first + np.arange(n))
    q = dyn.cart_prob * dyn.buy_prob
    purchase_rate = pop.rate * (1 - (1 - q) * np.exp(-dyn.extra_views_per_session * q))
    h0 = np.exp(pop.logh0.astype(np.float64))
    gone = st.dropout_day < NEVER
    customers = pa.table(
        [
            cid,
            clock.ts(pop.signup_day),
            pa.array(pop.rate.astype(np.float64)),
            pa.array(purchase_rate.astype(float)),
            pa.array(np.asarray(dyn.price_levels)[pop.level]),
            pa.array(np.asarray(CHANNELS, object)[pop.channel]),
            pa.array(h0),
            pa.array(pop.mood.astype(np.float64)),
            clock.ts(np.where(gone, st.dropout_day, 0), valid=gone),
        ],
        schema=schemas["customers_truth"],
    )
    r, c = np.nonzero(pop.taste > 2 * dyn.taste_floor / cat.n_categories)
    taste = pa.table(
        [customer_ids(first + r), pa.array(category_names(cat)[c], pa.string()), pa.array(pop.taste[r, c])],
        schema=schemas["taste"],
    )
    k = len(OFFER_TYPES)
    eff = pop.effect.astype(np.float64)
    window = effect_days * h0[:, None]
    prob = np.exp(-window) - np.exp(-window * np.exp(eff))  # change in P(dropout during the offer) at baseline
    effects = pa.table(
        [
            customer_ids(first + np.repeat(np.arange(n), k)),
            pa.array(np.tile(np.asarray(OFFER_TYPES, object), n)),
            pa.array(eff.ravel().astype(np.float32)),
            pa.array(prob.ravel().astype(np.float32)),
        ],
        schema=schemas["treatment_effects"],
    )
    return {"customers_truth": customers, "taste": taste, "treatment_effects": effects}


def _complements(cat: Catalog) -> pa.Table:
    mains = np.flatnonzero(cat.complement >= 0)
    return pa.table([item_ids(mains), item_ids(cat.complement[mains])], schema=_truth_schemas()["complements"])


def _categories(cat: Catalog) -> pa.Table:
    return pa.table(
        [
            pa.array(category_names(cat), pa.string()),
            pa.array(np.asarray(DEPARTMENTS, object)[cat.department]),
            pa.array(cat.consumable),
            pa.array(cat.cycle.astype(np.int64)),
            pa.array(cat.return_rate),
            pa.array(cat.quality_rate),
        ],
        schema=_truth_schemas()["categories"],
    )
