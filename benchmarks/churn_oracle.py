"""How close the champion churn model comes to the best possible: its test ROC-AUC against the generator's oracle."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from sklearn.metrics import roc_auc_score

from benchmarks.report import BenchReport
from features.tables.store import fingerprint
from patron.config import Settings
from training.churn.model import ChurnModel
from training.churn.train import split_xy
from training.mlops import tracking


@dataclass
class OracleGap:
    """Champion and oracle ROC-AUC on the same customers at the test cutoff (synthetic data only)."""

    cutoff: str
    customers: int
    label_rate: float
    model_version: str
    model_auc: float
    oracle_auc: float
    fingerprint: str = ""

    @property
    def gap(self) -> float:
        return self.oracle_auc - self.model_auc

    def summary(self) -> str:
        """One paragraph with both figures and their gap."""
        return (
            f"test cutoff {self.cutoff}: {self.customers} active customers, churn rate {self.label_rate:.3f}\n"
            f"  champion patron-churn v{self.model_version}  ROC-AUC {self.model_auc:.4f}\n"
            f"  oracle (true latent state)  ROC-AUC {self.oracle_auc:.4f}\n"
            f"  gap {self.gap:+.4f}"
        )

    def bench_report(self, settings: Settings) -> BenchReport:
        """Both figures as a benchmark table."""
        return BenchReport(
            name="Churn oracle gap",
            dataset="synthetic",
            protocol={"cutoff": self.cutoff, "customers": self.customers, "label_rate": round(self.label_rate, 4)},
            columns=["roc_auc"],
            rows=[
                {"model": f"champion patron-churn v{self.model_version}", "roc_auc": self.model_auc},
                {"model": "oracle (true latent state)", "roc_auc": self.oracle_auc},
            ],
            fingerprint=self.fingerprint,
            seeds={"synth": settings.seed, "churn": settings.churn.seed},
            summary={"gap": self.gap},
            notes=[f"oracle ROC-AUC minus the champion's: {self.gap:+.4f}"],
        )


def churn_oracle_gap(settings: Settings) -> OracleGap:
    """Score the champion and the generator's oracle on the test-cutoff customers (needs synthetic ground truth)."""
    from features.pit import build
    from features.synthetic.oracle import oracle_for

    client = tracking.configure(settings)
    name, alias = settings.tracking.churn_model, settings.tracking.champion_alias
    version = client.get_model_version_by_alias(name, alias).version
    model = ChurnModel.from_registry(settings, str(version))
    cutoff = build.cutoff_plan(settings).test
    test = build.training_set(settings, [cutoff])
    X, y = split_xy(test)
    oracle_p = oracle_for(settings, cutoff.date(), test["customer_id"])
    return OracleGap(
        cutoff=cutoff.date().isoformat(),
        customers=len(y),
        label_rate=float(y.mean()),
        model_version=str(version),
        model_auc=float(roc_auc_score(y, model.raw_proba(X))),
        oracle_auc=float(roc_auc_score(y, oracle_p)),
        fingerprint=fingerprint(test),
    )


def run_churn_oracle(settings: Settings) -> tuple[OracleGap, list[Path]]:
    """The gap, written to WORKSPACE/bench/churn_oracle.md/.json and logged as an MLflow run of the workspace."""
    started = time.perf_counter()
    gap = churn_oracle_gap(settings)
    report = gap.bench_report(settings)
    report.seconds = time.perf_counter() - started
    return gap, report.write(settings.workspace / "bench", "churn_oracle", settings)
