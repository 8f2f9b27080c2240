"""All of Patron's settings: the one seed, a section per component, the workspace layout, and how a YAML profile
(configs/) is read over the defaults the section models hold."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import model_validator

from patron.config.benchmarks import BenchConfig, CampaignBenchConfig, RecsysBenchConfig, SoakConfig
from patron.config.features import (
    FeatureConfig,
    IngestConfig,
    InputLimitsConfig,
    PrivacyConfig,
    RepurchaseConfig,
    SegmentsConfig,
    SynthConfig,
)
from patron.config.recommender import RecommenderConfig, SequenceConfig, TwoStageConfig
from patron.config.reports import ReportsConfig
from patron.config.section import SEED, Section, SeededSection
from patron.config.serving import (
    AlertsConfig,
    AuthConfig,
    BatchRecommendConfig,
    CampaignConfig,
    DashboardConfig,
    OnlineConfig,
    RetentionConfig,
    RulesConfig,
    ServingConfig,
)
from patron.config.training import (
    ChurnConfig,
    ChurnTuneConfig,
    CLVConfig,
    MonitorConfig,
    TrackingConfig,
    TuneConfig,
    UpliftConfig,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO_ROOT / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "default.yaml"


class Settings(Section):
    """All of Patron's configuration."""

    workspace: Path = Path("./workspace")  # overridden by $PATRON_HOME
    seed: int = SEED  # every random draw: the synthetic retailer, splits, model fits, tuning samplers, bootstraps
    ingest: IngestConfig = IngestConfig()
    input_limits: InputLimitsConfig = InputLimitsConfig()
    synth: SynthConfig = SynthConfig()
    features: FeatureConfig = FeatureConfig()
    recommender: RecommenderConfig = RecommenderConfig()
    churn: ChurnConfig = ChurnConfig()
    tracking: TrackingConfig = TrackingConfig()
    serving: ServingConfig = ServingConfig()
    bench: BenchConfig = BenchConfig()
    clv: CLVConfig = CLVConfig()
    segments: SegmentsConfig = SegmentsConfig()
    uplift: UpliftConfig = UpliftConfig()
    retention: RetentionConfig = RetentionConfig()
    campaign: CampaignConfig = CampaignConfig()
    online: OnlineConfig = OnlineConfig()
    rules: RulesConfig = RulesConfig()
    repurchase: RepurchaseConfig = RepurchaseConfig()
    batch_recommend: BatchRecommendConfig = BatchRecommendConfig()
    alerts: AlertsConfig = AlertsConfig()
    privacy: PrivacyConfig = PrivacyConfig()
    auth: AuthConfig = AuthConfig()
    two_stage: TwoStageConfig = TwoStageConfig()
    sequence: SequenceConfig = SequenceConfig()
    recsys_bench: RecsysBenchConfig = RecsysBenchConfig()
    campaign_bench: CampaignBenchConfig = CampaignBenchConfig()
    tune: TuneConfig = TuneConfig()
    churn_tune: ChurnTuneConfig = ChurnTuneConfig()
    monitor: MonitorConfig = MonitorConfig()
    dashboard: DashboardConfig = DashboardConfig()
    soak: SoakConfig = SoakConfig()
    reports: ReportsConfig = ReportsConfig()

    @model_validator(mode="after")
    def _one_seed(self) -> Settings:
        # A seeded section takes the top-level seed; its own is accepted only as the copy a settings dump holds.
        seeded = {name: section for name, section in self if isinstance(section, SeededSection)}
        other = [f"{name}.seed" for name, s in seeded.items() if "seed" in s.model_fields_set and s.seed != self.seed]
        if other:
            raise ValueError(f"seed is set once, at the top level (seed: {self.seed}): remove {', '.join(other)}")
        for name, section in seeded.items():
            if section.seed != self.seed:
                setattr(self, name, section.model_copy(update={"seed": self.seed}))
        return self

    # --- workspace layout -------------------------------------------------
    @property
    def campaigns_dir(self) -> Path:
        """Retention campaigns: one folder per campaign (assignment, exports, readouts)."""
        return self.workspace / "campaigns"

    @property
    def tables_dir(self) -> Path:
        """Validated contract tables (Parquet)."""
        return self.workspace / "tables"

    @property
    def quarantine_dir(self) -> Path:
        """Rows the ingest refused, per table."""
        return self.workspace / "quarantine"

    @property
    def features_dir(self) -> Path:
        """Point-in-time feature files, per cutoff."""
        return self.workspace / "features"

    @property
    def ground_truth_dir(self) -> Path:
        """The synthetic retailer's latent truth (churn oracle, offer effects)."""
        return self.workspace / "ground_truth"

    @property
    def raw_dir(self) -> Path:
        """The retailer's original source files."""
        return self.workspace / "raw"

    @property
    def outputs_dir(self) -> Path:
        """Batch outputs and benchmark runs."""
        return self.workspace / "outputs"

    @property
    def online_db(self) -> Path:
        """The SQLite online store."""
        return self.online.sqlite_path or self.workspace / "online.db"

    @property
    def rules_file(self) -> Path:
        """The live business rules file."""
        return self.online.rules_path or self.workspace / "rules.yaml"

    @property
    def reports_dir(self) -> Path:
        """HTML reports."""
        return self.reports.out_dir or self.workspace / "reports"

    @property
    def alerts_log(self) -> Path:
        """Every churn alert and its delivery outcome."""
        return self.alerts.log_path or self.workspace / "alerts.jsonl"

    @property
    def api_keys_file(self) -> Path:
        """Hashed API keys and their scopes."""
        return self.auth.keys_file or self.workspace / "api_keys.json"

    @property
    def tracking_uri(self) -> str:
        """MLflow tracking store: the configured server or a SQLite database in the workspace."""
        return self.tracking.uri or f"sqlite:///{(self.workspace / 'mlflow.db').resolve()}"

    @property
    def artifact_location(self) -> str:
        """MLflow artifact store: the configured one or a folder in the workspace."""
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


def _model_defaults() -> dict[str, Any]:
    """Every default of the section models as a mapping, seeds left to Settings."""
    defaults = Settings()
    return defaults.model_dump(exclude={name: {"seed"} for name, value in defaults if isinstance(value, SeededSection)})


def load_settings(path: str | Path | None = None, **overrides: Any) -> Settings:
    """Settings from a YAML file (default: $PATRON_CONFIG or configs/default.yaml), $PATRON_HOME and overrides.

    Each is merged over the models' defaults, a mapping into a mapping: `churn: {params: {num_leaves: 31}}` keeps the
    other default params."""
    path = Path(path or os.environ.get("PATRON_CONFIG") or DEFAULT_CONFIG)
    data = _deep_merge(_model_defaults(), _read_yaml(path))
    if os.environ.get("PATRON_HOME"):
        data["workspace"] = os.environ["PATRON_HOME"]
    if os.environ.get("PATRON_API_KEYS_FILE"):
        data = _deep_merge(data, {"auth": {"keys_file": os.environ["PATRON_API_KEYS_FILE"]}})
    data = _deep_merge(data, overrides)
    settings = Settings.model_validate(data)
    ws = settings.workspace
    if not ws.is_absolute():
        ws = Path.cwd() / ws
    return settings.model_copy(update={"workspace": ws.resolve()})
