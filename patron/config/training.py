"""Settings of model training (training/): churn, customer value, offer uplift, MLflow tracking, tuning and
drift monitoring. The recommender's are in patron/config/recommender.py."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from patron.config.section import Section, SeededSection


class ChurnConfig(SeededSection):
    """`patron train churn`: the LightGBM churn model, its calibration and the risk tiers its scores fall in."""

    num_boost_round: int = Field(1000, gt=0)
    early_stopping_rounds: int = Field(50, gt=0)
    # Leaves, leaf size, L2, rate, feature share: `patron tune churn`'s best of 20 trials on the synthetic retailer's
    # validation cutoff (log loss 0.1937 vs 0.1951). One thread: tens of thousands of rows are fast and never stall
    # on busy cores.
    params: dict[str, Any] = {
        "objective": "binary",
        "learning_rate": 0.063,
        "num_leaves": 18,
        "min_data_in_leaf": 53,
        "feature_fraction": 0.42,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "lambda_l2": 3.5,
        "verbose": -1,
        "num_threads": 1,
    }
    risk_tiers: dict[str, float] = {"high": 0.6, "medium": 0.3, "low": 0.0}  # lower bounds of churn probability
    # auto: the lower cross-validated Brier score on the validation cutoff
    calibration: Literal["auto", "isotonic", "platt", "none"] = "auto"
    calibration_folds: int = Field(3, ge=2)
    ece_bins: int = Field(10, ge=2)  # equal-width bins of the expected calibration error

    @model_validator(mode="after")
    def _tiers(self) -> ChurnConfig:
        if not self.risk_tiers or min(self.risk_tiers.values()) != 0.0:
            raise ValueError("risk_tiers needs a tier whose lower bound is 0.0")
        return self

    def tier(self, probability: float) -> str:
        """Name of the highest tier whose lower bound the probability reaches."""
        for name, bound in sorted(self.risk_tiers.items(), key=lambda kv: -kv[1]):
            if probability >= bound:
                return name
        raise AssertionError("unreachable: a tier starts at 0")


class CLVConfig(SeededSection):
    """`patron train clv`: expected spend over the horizon, LightGBM stacked on BG/NBD + Gamma-Gamma, evaluated by
    customer-disjoint cross-validation (training/value/clv.py)."""

    horizon_days: int = Field(365, gt=0)  # expected spend over this many days after the cutoff
    folds: int = Field(5, ge=2)  # customer-disjoint cross-validation folds of the evaluation
    btyd_freq: Literal["D", "W"] = "W"  # lifetimes' time unit for BG/NBD and Gamma-Gamma
    btyd_penalizer: float = Field(0.0, ge=0.0)
    inner_valid_share: float = Field(0.2, gt=0.0, lt=1.0)  # share of the training customers held out to early-stop
    refit_rounds_factor: float = Field(1.15, gt=0.0)  # refit on all of them with this many times the best iteration
    num_boost_round: int = Field(3000, gt=0)
    early_stopping_rounds: int = Field(100, gt=0)
    # tweedie: zero-inflated, skewed spend (squared error: 36.2 MAE on CDNOW, tweedie 34.3)
    params: dict[str, Any] = {
        "objective": "tweedie",
        "learning_rate": 0.02,
        "num_leaves": 15,
        "min_data_in_leaf": 100,
        "feature_fraction": 0.8,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "lambda_l2": 10.0,
        "verbose": -1,
        "num_threads": 1,
    }


class UpliftConfig(SeededSection):
    """`patron train uplift` / `patron bench uplift`: offer effects from randomised campaigns, meta-learners over
    LightGBM (training/value/uplift*.py)."""

    # T-, offset T- (offers boosted from the control model) and X-learner, chosen by mean Qini on validation customers
    learners: list[Literal["t", "offset", "x"]] = Field(["t", "offset", "x"], min_length=1)
    offer_active_days: int = Field(60, gt=0)  # an offer sent this recently makes a customer ineligible
    # shrink each offer's effects toward their mean by the slope validation customers bear out
    # (training/value/uplift_calibration.py); off: on the demo retailer its slopes land on 0 or 1 and it leaves the
    # plan's promise as far from the truth as the raw effects (`patron bench plan-calibration`, docs/benchmarks.md)
    calibrate_effects: bool = False
    max_campaign_days: int | None = Field(None, gt=0)  # None: every randomised campaign day with a full horizon
    valid_share: float = Field(0.2, gt=0.0, lt=0.5)  # customer-disjoint validation and test shares
    test_share: float = Field(0.2, gt=0.0, lt=0.5)
    num_boost_round: int = Field(1000, gt=0)
    early_stopping_rounds: int = Field(50, gt=0)
    classifier_params: dict[str, Any] = {  # outcome models P(churn | features) per arm
        "objective": "binary",
        "learning_rate": 0.03,
        "num_leaves": 15,
        "min_data_in_leaf": 100,
        "feature_fraction": 0.8,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "lambda_l2": 10.0,
        "verbose": -1,
        "num_threads": 1,
    }
    regressor_params: dict[str, Any] = {  # X-learner effect models on imputed effects
        "objective": "regression",
        "learning_rate": 0.03,
        "num_leaves": 7,
        "min_data_in_leaf": 200,
        "feature_fraction": 0.8,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "lambda_l2": 10.0,
        "verbose": -1,
        "num_threads": 1,
    }
    target_share: float = Field(0.2, gt=0.0, le=1.0)  # bench: share of customers a campaign can reach
    value_feature: str = "spend_365d"  # bench: value per customer retained (a point-in-time feature)
    # bench: the whole fit and evaluation repeated on customer splits seed, seed + 1, ...: one split's figures swing
    bench_splits: int = Field(8, ge=1)
    qini_bins: int = Field(100, ge=10)  # points of the Qini and uplift curves


class TrackingConfig(Section):
    """MLflow: where runs and models are kept, and the registered model names."""

    uri: str | None = None  # None: a SQLite database inside the workspace
    artifact_location: str | None = None  # None: a folder inside the workspace
    experiment: str = "patron"
    recommender_model: str = "patron-recommender"
    churn_model: str = "patron-churn"
    clv_model: str = "patron-clv"
    uplift_model: str = "patron-uplift"
    sequence_model: str = "patron-sequence"
    champion_alias: str = "champion"


class TuneConfig(Section):
    """`patron tune recommender`: an Optuna study of the recommender (ALS, or the two-stage pipeline when configured)
    on the validation window (training/tune/recommender.py); TPE seed: Settings.seed + the trial number."""

    trials: int = Field(20, gt=0)  # trials per invocation (--trials overrides); a second invocation continues
    study: str = "recommender"  # study name (--study overrides)
    # None: optuna.db beside a SQLite tracking store (one file cannot hold both: MLflow and Optuna each keep an
    # alembic_version table). With a tracking server, set e.g.
    # postgresql+psycopg://patron@127.0.0.1:5432/mlflow?options=-csearch_path%3Doptuna
    storage: str | None = None
    sqlite_file: str = "optuna.db"
    storage_open_attempts: int = Field(3, gt=0)  # workers starting together race to create the study schema
    iteration_block: int = Field(5, gt=0)  # ALS iterations between intermediate validation scores (pruning)
    max_iterations: int = Field(40, gt=0)
    pruner_startup_trials: int = Field(3, ge=0)  # MedianPruner: complete trials before any pruning
    pruner_warmup_blocks: int = Field(1, ge=0)  # MedianPruner: blocks of a trial before it can be pruned
    factors: tuple[int, int] = (16, 256)  # log-uniform search ranges
    regularization: tuple[float, float] = (1e-3, 10.0)
    alpha: tuple[float, float] = (0.1, 50.0)
    candidate_alias: str = "candidate"  # alias on the registered best version (promotion stays `patron promote`)


class ChurnTuneConfig(Section):
    """`patron tune churn`: an Optuna study of the churn booster fitted on the training cutoffs and scored on the
    validation cutoff, never the test cutoff (training/tune/churn.py); storage and alias as in `tune`."""

    trials: int = Field(20, gt=0)
    study: str = "churn"
    report_every_rounds: int = Field(25, gt=0)  # boosting rounds between validation log-loss reports (pruning)
    pruner_startup_trials: int = Field(3, ge=0)
    pruner_warmup_steps: int = Field(2, ge=0)
    num_leaves: tuple[int, int] = (4, 63)  # search ranges, log-uniform
    min_data_in_leaf: tuple[int, int] = (10, 400)
    lambda_l2: tuple[float, float] = (0.01, 100.0)
    learning_rate: tuple[float, float] = (0.01, 0.1)
    feature_fraction: tuple[float, float] = (0.4, 1.0)  # uniform


class MonitorConfig(Section):
    """`patron monitor` (training/mlops/monitor.py): drift of live features, churn scores and recommendation coverage
    against the champion's training data (coverage on a customer sample drawn with Settings.seed)."""

    bins: int = Field(10, ge=2)  # quantile bins per numeric feature (training data's edges)
    psi_epsilon: float = Field(1e-4, gt=0)  # floor on a bin's share, so an empty bin stays finite
    feature_psi_max: float = Field(0.25, gt=0)  # PSI above this flags a feature (0.1-0.25: watch; >0.25: act)
    score_psi_max: float = Field(0.25, gt=0)  # PSI of the churn scores
    coverage_drop_max: float = Field(0.5, ge=0, le=1)  # relative drop of recommendation coverage from training
    # Patterns (fnmatch) of features reported, never flagged: features that grow with the age of the data, not with
    # customer behaviour, since live data always has more history than the champion's older training cutoffs.
    # Recent windows (spend_90d, tickets_30d...) still catch a change of behaviour.
    ignore_features: list[str] = ["*_total", "days_since_first_*", "tenure_days", "item_breadth", "points_balance"]
