"""Configuration: YAML files in configs/ validated by pydantic models, and the workspace layout."""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO_ROOT / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "default.yaml"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IngestConfig(_Section):
    max_quarantine_share: float = Field(0.05, ge=0.0, le=1.0)
    download_timeout_s: float = Field(10.0, gt=0)
    max_validation_passes: int = Field(10, ge=1)


class SynthConfig(_Section):
    customers: int = Field(5000, ge=10)
    items: int = Field(1000, ge=20)
    days: int = Field(540, ge=60)
    seed: int = 42
    start_date: date = date(2025, 1, 1)
    chunk_customers: int = Field(10_000, ge=100)
    oracle_replicas: int = Field(64, ge=1)
    campaign_every_days: int = Field(30, gt=0)
    campaign_share: float = Field(0.15, ge=0.0, le=1.0)
    offer_effect_days: int = Field(60, gt=0)
    offer_costs: dict[str, float] = {
        "discount_voucher": 5.0, "free_delivery": 3.0, "double_points": 2.0, "personal_call": 8.0,
    }


class InteractionConfig(_Section):
    event_weights: dict[Literal["view", "cart", "purchase", "return"], float]
    half_life_days: float = Field(120.0, gt=0)
    min_weight: float = 0.0


class FeatureConfig(_Section):
    windows_days: list[int] = [30, 90, 180, 365]
    lookback_days: int = Field(180, gt=0)
    horizon_days: int = Field(90, gt=0)
    train_cutoffs_days_before_end: list[int]
    valid_cutoff_days_before_end: int
    test_cutoff_days_before_end: int
    interactions: InteractionConfig
    duckdb_threads: int | None = Field(None, gt=0)  # None: DuckDB's default (all cores)
    duckdb_memory_limit: str | None = None  # e.g. "4GB"; None: DuckDB's default (80% of RAM)

    @model_validator(mode="after")
    def _time_ordered(self) -> "FeatureConfig":
        h = self.horizon_days
        if self.test_cutoff_days_before_end < h:
            raise ValueError("test_cutoff_days_before_end must leave a full horizon before the end of the data")
        if self.valid_cutoff_days_before_end < self.test_cutoff_days_before_end + h:
            raise ValueError("the validation label window must end before the test cutoff")
        if min(self.train_cutoffs_days_before_end) < self.valid_cutoff_days_before_end + h:
            raise ValueError("every training label window must end before the validation cutoff")
        return self


class RecommenderConfig(_Section):
    factors: int = Field(64, gt=0)
    regularization: float = Field(0.05, ge=0)
    alpha: float = Field(2.0, gt=0)
    iterations: int = Field(20, gt=0)
    seed: int = 42
    use_gpu: bool = False
    holdout_days: int = Field(30, gt=0)
    k: int = Field(10, gt=0)


class ChurnConfig(_Section):
    seed: int = 42
    num_boost_round: int = Field(1000, gt=0)
    early_stopping_rounds: int = Field(50, gt=0)
    params: dict[str, Any]
    risk_tiers: dict[str, float]
    calibration: Literal["auto", "isotonic", "platt", "none"] = "auto"  # auto: chosen by validation
    calibration_folds: int = Field(3, ge=2)
    ece_bins: int = Field(10, ge=2)

    @model_validator(mode="after")
    def _tiers(self) -> "ChurnConfig":
        if not self.risk_tiers or min(self.risk_tiers.values()) != 0.0:
            raise ValueError("risk_tiers needs a tier whose lower bound is 0.0")
        return self

    def tier(self, probability: float) -> str:
        """Name of the highest tier whose lower bound the probability reaches."""
        for name, bound in sorted(self.risk_tiers.items(), key=lambda kv: -kv[1]):
            if probability >= bound:
                return name
        raise AssertionError("unreachable: a tier starts at 0")


class BenchConfig(_Section):
    """`patron bench churn|clv`: protocols and the bench LightGBM (tuned inside each cross-validation fold)."""

    seed: int = 42
    folds: int = Field(5, ge=2)
    cdnow_calibration_days: int = Field(273, gt=0)
    cdnow_holdout_days: int = Field(273, gt=0)
    btyd_freq: Literal["D", "W"] = "W"
    btyd_penalizer: float = Field(0.0, ge=0.0)
    inner_valid_share: float = Field(0.2, gt=0.0, lt=1.0)
    num_boost_round: int = Field(5000, gt=0)
    early_stopping_rounds: int = Field(150, gt=0)
    refit_rounds_factor: float = Field(1.15, gt=0.0)
    params: dict[str, Any] = {}
    grid: list[dict[str, Any]] = [{}]


class CLVConfig(_Section):
    """Customer lifetime value: expected spend over the horizon."""

    horizon_days: int = Field(365, gt=0)
    seed: int = 42
    num_boost_round: int = Field(3000, gt=0)
    early_stopping_rounds: int = Field(100, gt=0)
    params: dict[str, Any] = {}


class TrackingConfig(_Section):
    uri: str | None = None
    artifact_location: str | None = None
    experiment: str = "patron"
    recommender_model: str = "patron-recommender"
    churn_model: str = "patron-churn"
    clv_model: str = "patron-clv"
    champion_alias: str = "champion"


class ServingConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(3000, gt=0, lt=65536)
    workers: int = Field(1, gt=0)
    max_k: int = Field(100, gt=0)
    max_batch: int = Field(1000, gt=0)
    champion_retry_s: float = Field(30.0, gt=0)
    request_timeout_s: float = Field(60.0, gt=0)


class OnlineConfig(_Section):
    backend: Literal["sqlite", "redis"] = "sqlite"
    sqlite_path: Path | None = None  # None: WORKSPACE/online.db
    sqlite_synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "patron"
    max_events: int = Field(500, gt=0)
    history_events: int = Field(100, gt=0)
    context_weight: float = Field(0.5, ge=0.0, le=1.0)
    rules_path: Path | None = None  # None: WORKSPACE/rules.yaml
    rules_check_s: float = Field(1.0, gt=0)
    reload_poll_s: float = Field(10.0, gt=0)


class RulesConfig(_Section):
    in_stock_only: bool = True
    include_categories: list[str] = []
    exclude_categories: list[str] = []
    max_per_category: int | None = Field(None, gt=0)
    boost_items: dict[str, float] = {}
    boost_categories: dict[str, float] = {}
    max_boost: float = Field(2.0, ge=1.0)


class TwoStageSources(_Section):
    als: bool = True
    item_item: bool = True
    ease: bool = True
    copurchase: bool = True
    repeat: bool = False  # the benchmark protocol excludes seen items, so repeats cannot count there
    trending: bool = True
    popular: bool = True


class TwoStageConfig(_Section):
    sources: TwoStageSources = TwoStageSources()
    ranker: bool = True                 # False: candidates ordered by the sum of their sources' reciprocal ranks
    label_windows: int = Field(2, ge=1)  # ranker training windows: validation, then earlier eighths of train
    candidates_per_source: int = Field(200, gt=0)
    copurchase_window: int = Field(5, gt=0)
    recent_items: int = Field(20, gt=0)
    recency_decay: float = Field(0.8, gt=0.0, le=1.0)
    trend_days: int = Field(30, gt=0)
    threads: int = Field(2, gt=0)
    seed: int = 42
    num_boost_round: int = Field(400, gt=0)
    early_stopping_rounds: int = Field(40, gt=0)
    early_stopping_share: float = Field(0.15, gt=0.0, lt=1.0)
    ranker_params: dict[str, Any] = {}


class RecsysBenchConfig(_Section):
    trials: int = Field(20, gt=0)
    k: int = Field(10, gt=0)
    cold_max_train: int = Field(5, gt=0)  # cold slice: customers with fewer training interactions than this
    seed: int = 42
    threads: int = Field(2, gt=0)
    peers: list[str] = ["popularity", "als", "bpr", "cosine", "bm25", "ease"]
    ablation: bool = True  # also run the two-stage pipeline without the ranker and without each source


class Settings(_Section):
    """All of Patron's configuration."""

    workspace: Path = Path("./workspace")
    ingest: IngestConfig = IngestConfig()
    synth: SynthConfig = SynthConfig()
    features: FeatureConfig
    recommender: RecommenderConfig = RecommenderConfig()
    churn: ChurnConfig
    tracking: TrackingConfig = TrackingConfig()
    serving: ServingConfig = ServingConfig()
    bench: BenchConfig = BenchConfig()
    clv: CLVConfig = CLVConfig()
    online: OnlineConfig = OnlineConfig()
    rules: RulesConfig = RulesConfig()
    two_stage: TwoStageConfig = TwoStageConfig()
    recsys_bench: RecsysBenchConfig = RecsysBenchConfig()

    # --- workspace layout -------------------------------------------------
    @property
    def tables_dir(self) -> Path:
        return self.workspace / "tables"

    @property
    def quarantine_dir(self) -> Path:
        return self.workspace / "quarantine"

    @property
    def features_dir(self) -> Path:
        return self.workspace / "features"

    @property
    def ground_truth_dir(self) -> Path:
        return self.workspace / "ground_truth"

    @property
    def raw_dir(self) -> Path:
        return self.workspace / "raw"

    @property
    def outputs_dir(self) -> Path:
        return self.workspace / "outputs"

    @property
    def online_db(self) -> Path:
        return self.online.sqlite_path or self.workspace / "online.db"

    @property
    def rules_file(self) -> Path:
        return self.online.rules_path or self.workspace / "rules.yaml"

    @property
    def tracking_uri(self) -> str:
        return self.tracking.uri or f"sqlite:///{(self.workspace / 'mlflow.db').resolve()}"

    @property
    def artifact_location(self) -> str:
        return self.tracking.artifact_location or (self.workspace / "mlartifacts").resolve().as_uri()


def _deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _read_yaml(path: Path) -> dict:
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the top level must be a mapping")
    parent = data.pop("extends", None)
    if parent:
        data = _deep_merge(_read_yaml((path.parent / parent).resolve()), data)
    return data


def load_settings(path: str | Path | None = None, **overrides: Any) -> Settings:
    """Settings from a YAML file (default: $PATRON_CONFIG or configs/default.yaml), $PATRON_HOME and overrides."""
    path = Path(path or os.environ.get("PATRON_CONFIG") or DEFAULT_CONFIG)
    data = _read_yaml(path)
    if os.environ.get("PATRON_HOME"):
        data["workspace"] = os.environ["PATRON_HOME"]
    data = _deep_merge(data, overrides)
    settings = Settings.model_validate(data)
    ws = settings.workspace
    if not ws.is_absolute():
        ws = Path.cwd() / ws
    return settings.model_copy(update={"workspace": ws.resolve()})
