"""How close the champion churn model comes to the best possible: its test ROC-AUC against the generator's oracle."""

from __future__ import annotations

from dataclasses import dataclass

import mlflow
from sklearn.metrics import roc_auc_score

from patron.config import Settings
from training.mlops import tracking
from training.churn.train import split_xy


@dataclass
class OracleGap:
    """Champion and oracle ROC-AUC on the same customers at the test cutoff (synthetic data only)."""

    cutoff: str
    customers: int
    label_rate: float
    model_version: str
    model_auc: float
    oracle_auc: float

    @property
    def gap(self) -> float:
        return self.oracle_auc - self.model_auc

    def summary(self) -> str:
        """One paragraph with both figures and their gap."""
        return (f"test cutoff {self.cutoff}: {self.customers} active customers, churn rate {self.label_rate:.3f}\n"
                f"  champion patron-churn v{self.model_version}  ROC-AUC {self.model_auc:.4f}\n"
                f"  oracle (true latent state)  ROC-AUC {self.oracle_auc:.4f}\n"
                f"  gap {self.gap:+.4f}")


def churn_oracle_gap(settings: Settings) -> OracleGap:
    """Score the champion and the generator's oracle on the test-cutoff customers (needs synthetic ground truth)."""
    from features.pit import build
    from features.synthetic.oracle import oracle_for

    client = tracking.configure(settings)
    name, alias = settings.tracking.churn_model, settings.tracking.champion_alias
    version = client.get_model_version_by_alias(name, alias).version
    booster = mlflow.lightgbm.load_model(f"models:/{name}/{version}")
    cutoff = build.cutoff_plan(settings).test
    test = build.training_set(settings, [cutoff])
    X, y = split_xy(test)
    oracle_p = oracle_for(settings, cutoff.date(), test["customer_id"])
    return OracleGap(cutoff=cutoff.date().isoformat(), customers=len(y), label_rate=float(y.mean()),
                     model_version=str(version), model_auc=float(roc_auc_score(y, booster.predict(X))),
                     oracle_auc=float(roc_auc_score(y, oracle_p)))
