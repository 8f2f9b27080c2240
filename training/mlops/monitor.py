"""`patron monitor`: live feature, churn-score, purchase-price and recommendation-coverage drift against the
churn champion's training data, written as a JSON + Markdown report; a crossed threshold makes the command fail."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException

from features.pit.build import churn_labels, customer_features, data_end, training_set
from features.tables.store import read_table, write_json
from patron.config import Settings
from training.mlops import drift, tracking

PRICE = "purchase_unit_price"  # the extra, event-level column: unit prices of purchases in the feature windows


def purchase_prices(settings: Settings, start: pd.Timestamp, end: pd.Timestamp) -> pd.Series:
    """Unit prices of the purchase events in [start, end) of the workspace events table."""
    events = read_table(settings.tables_dir, "events", columns=["ts", "type", "unit_price"])
    chosen = events[(events["type"] == "purchase") & (events["ts"] >= start) & (events["ts"] < end)]
    return chosen["unit_price"].astype(float).reset_index(drop=True)


def training_profile(
    settings: Settings, train: pd.DataFrame, features: list[str], scores: np.ndarray
) -> dict[str, Any]:
    """The reference profile of a churn training set (stacked cutoffs): its `features` columns and the model's
    probabilities on its rows (`scores`)."""
    cutoffs = pd.to_datetime(train["cutoff"])
    start = cutoffs.min() - pd.Timedelta(days=settings.features.lookback_days)
    prices = purchase_prices(settings, start, cutoffs.max())
    profile = drift.frame_profile(train[features], np.asarray(scores, dtype=float), settings.monitor, {PRICE: prices})
    return {**profile, "cutoffs": sorted(c.date().isoformat() for c in cutoffs.unique())}


class ChampionChurn:
    """The registered churn champion as any MLflow client loads it (the logged ChurnModel's pyfunc: calibrated
    probabilities), its feature columns, version and training run."""

    def __init__(self, settings: Settings) -> None:
        t = settings.tracking
        client = tracking.configure(settings)
        try:
            version = client.get_model_version_by_alias(t.churn_model, t.champion_alias)
        except MlflowException as exc:
            raise LookupError(
                f"no {t.churn_model}@{t.champion_alias} to monitor: run `patron train churn` and "
                "`patron promote churn` first"
            ) from exc
        self.version = str(version.version)
        self.run = client.get_run(version.run_id)
        self.model = mlflow.pyfunc.load_model(f"models:/{t.churn_model}/{self.version}")
        self.features = self.model.metadata.get_input_schema().input_names()

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Churn probabilities as served (calibrated when the champion has a calibrator) of the rows of X."""
        return np.asarray(self.model.predict(X[self.features]), dtype=float)


def champion_reference(settings: Settings, champion: ChampionChurn) -> tuple[dict[str, Any], str]:
    """The reference profile logged with the champion run, else rebuilt from its logged training cutoffs."""
    run = champion.run
    try:
        return mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/{drift.REFERENCE_ARTIFACT}"), "logged"
    except (MlflowException, OSError, json.JSONDecodeError):
        pass
    cutoffs = run.data.params.get("train_cutoffs")
    if not cutoffs:
        raise ValueError(
            f"churn run {run.info.run_id}: no reference profile and no train_cutoffs parameter; "
            "retrain with `patron train churn`"
        )
    train = training_set(settings, cutoffs.split(","))
    return training_profile(settings, train, champion.features, champion.predict(train)), "rebuilt"


def live_population(settings: Settings) -> tuple[pd.DataFrame, pd.Timestamp]:
    """Features at the end of the data of the customers churn scores are for (active: a purchase in the lookback)."""
    end = data_end(settings)
    labels = churn_labels(settings, end)
    active = set(labels.loc[labels["active"], "customer_id"].astype(str))
    features = customer_features(settings, end)
    return features[features["customer_id"].astype(str).isin(active)].reset_index(drop=True), end


def recommendation_coverage(settings: Settings) -> dict[str, float] | None:
    """Share of the catalogue in the recommender champion's top-k over as many known customers as its evaluation
    used, beside the coverage it logged at training (None when no recommender champion or metric exists)."""
    t = settings.tracking
    client = tracking.configure(settings)
    try:
        version = client.get_model_version_by_alias(t.recommender_model, t.champion_alias)
    except MlflowException:
        return None
    metrics = client.get_run(version.run_id).data.metrics
    if "catalogue_coverage" not in metrics or not metrics.get("eval_customers"):
        return None
    rec = mlflow.pyfunc.load_model(f"models:/{t.recommender_model}/{version.version}").unwrap_python_model().recommender
    rng = np.random.default_rng(settings.seed)
    n = min(int(metrics["eval_customers"]), len(rec.customer_ids))
    sample = rng.choice(rec.customer_ids, size=n, replace=False)
    products = read_table(settings.tables_dir, "products", columns=["item_id", "in_stock"])
    in_stock = set(products.loc[products["in_stock"].astype(bool), "item_id"].astype(str))
    shown = {item for c in sample for item, _ in rec.recommend(str(c), settings.recommender.k, allowed=in_stock)}
    live = len(shown) / len(rec.item_ids)
    reference = float(metrics["catalogue_coverage"])
    drop = max(0.0, 1 - live / reference) if reference > 0 else 0.0
    return {
        "reference": round(reference, 4),
        "live": round(live, 4),
        "relative_drop": round(drop, 4),
        "threshold": settings.monitor.coverage_drop_max,
        "customers": n,
        "flagged": bool(drop > settings.monitor.coverage_drop_max),
    }


@dataclass
class MonitorReport:
    """Drift figures against the churn champion's training data and where they were written."""

    psi: pd.DataFrame
    coverage: dict[str, float] | None
    churn_version: str
    reference_source: str
    data_end: str
    live_rows: int
    online_purchases: int
    written: list[Path] = field(default_factory=list)

    @property
    def flagged(self) -> list[str]:
        """Names of the checks over their threshold."""
        names = self.psi.loc[self.psi["flagged"], "name"].tolist()
        return names + (["recommendation_coverage"] if self.coverage and self.coverage["flagged"] else [])

    def as_dict(self) -> dict[str, Any]:
        """The report as plain JSON-able data."""
        return {
            "churn_version": self.churn_version,
            "reference": self.reference_source,
            "data_end": self.data_end,
            "live_customers": self.live_rows,
            "online_purchases": self.online_purchases,
            "flagged": self.flagged,
            "psi": self.psi.to_dict(orient="records"),
            "coverage": self.coverage,
        }

    def markdown(self) -> str:
        """A Markdown page: the flagged checks first, then every PSI, highest first."""
        lines = [
            f"# Drift report ({self.data_end})",
            "",
            f"Churn champion v{self.churn_version}, reference profile {self.reference_source}; "
            f"{self.live_rows} active customers at the end of the data, {self.online_purchases} online "
            "purchases not yet ingested.",
            "",
            "**Over threshold:** " + (", ".join(self.flagged) or "none"),
            "",
            "| check | kind | PSI | threshold | flagged |",
            "|---|---|---:|---:|---|",
        ]
        for r in self.psi.sort_values("psi", ascending=False).itertuples():
            note = "yes" if r.flagged else ("ignored" if r.ignored else "")
            lines.append(f"| {r.name} | {r.kind} | {r.psi:.4f} | {r.threshold:g} | {note} |")
        if self.coverage:
            c = self.coverage
            lines += [
                "",
                f"Recommendation coverage: {c['live']:.3f} live vs {c['reference']:.3f} at training "
                f"({c['relative_drop']:.0%} drop, threshold {c['threshold']:.0%}, {c['customers']} customers)",
            ]
        return "\n".join(lines) + "\n"

    def summary(self) -> str:
        """One line for the command line."""
        worst = self.psi[~self.psi["ignored"]].sort_values("psi", ascending=False).head(1)
        top = f"highest PSI {worst['name'].iat[0]} {worst['psi'].iat[0]:.3f}" if len(worst) else "no PSI"
        state = f"DRIFT in {', '.join(self.flagged)}" if self.flagged else "no drift over the thresholds"
        return f"monitor: {state}; {len(self.psi)} checks, {top}; report {self.written[0] if self.written else '-'}"


def run_monitor(
    settings: Settings,
    out: Path | None = None,
    online_prices: pd.Series | None = None,
    progress: Callable[[str], None] = lambda step: None,
) -> MonitorReport:
    """Compare live data with the churn champion's training data and write monitor.json and monitor.md to `out`
    (default WORKSPACE/outputs/monitor); `online_prices`: unit prices of online purchases not yet ingested."""
    progress("champion")
    champion = ChampionChurn(settings)
    progress("reference")
    reference, source = champion_reference(settings, champion)
    progress("live features")
    live, end = live_population(settings)
    X = live[[c for c in reference["features"] if c in live.columns]]
    missing = sorted(set(reference["features"]) - set(X.columns))
    if missing:
        raise ValueError(
            f"live features: missing column(s) {missing} the churn champion was trained with; "
            "rebuild features with the current code or retrain"
        )
    prices = purchase_prices(settings, end - pd.Timedelta(days=settings.features.lookback_days), end)
    online = pd.Series([], dtype=float) if online_prices is None else online_prices.astype(float)
    progress("scores")
    scores = champion.predict(live)
    table = drift.compare(
        reference, X, scores, settings.monitor, {PRICE: pd.concat([prices, online], ignore_index=True)}
    )
    progress("coverage")
    report = MonitorReport(
        psi=table,
        coverage=recommendation_coverage(settings),
        churn_version=champion.version,
        reference_source=source,
        data_end=end.date().isoformat(),
        live_rows=len(live),
        online_purchases=len(online),
    )
    folder = Path(out) if out is not None else settings.outputs_dir / "monitor"
    folder.mkdir(parents=True, exist_ok=True)
    report.written = [write_json(report.as_dict(), folder / "monitor.json"), folder / "monitor.md"]
    report.written[1].write_text(report.markdown())
    return report
