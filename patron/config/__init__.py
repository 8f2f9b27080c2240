"""Configuration: YAML profiles in configs/ read over the defaults of pydantic section models, and the workspace
layout. The models are grouped by layer (features, recommender, training, serving, benchmarks, reports); every name
is importable from here."""

from patron.config.benchmarks import BenchConfig, CampaignBenchConfig, RecsysBenchConfig, SoakConfig
from patron.config.features import (
    FeatureConfig,
    IngestConfig,
    InputLimitsConfig,
    InteractionConfig,
    PrivacyConfig,
    RepurchaseConfig,
    SegmentsConfig,
    SynthConfig,
)
from patron.config.recommender import RecommenderConfig, SequenceConfig, TwoStageConfig, TwoStageSources
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
from patron.config.settings import CONFIG_DIR, DEFAULT_CONFIG, REPO_ROOT, Settings, load_settings
from patron.config.training import (
    ChurnConfig,
    ChurnTuneConfig,
    CLVConfig,
    MonitorConfig,
    TrackingConfig,
    TuneConfig,
    UpliftConfig,
)

__all__ = [
    "CONFIG_DIR",
    "DEFAULT_CONFIG",
    "REPO_ROOT",
    "SEED",
    "AlertsConfig",
    "AuthConfig",
    "BatchRecommendConfig",
    "CampaignConfig",
    "BenchConfig",
    "CampaignBenchConfig",
    "ChurnConfig",
    "ChurnTuneConfig",
    "CLVConfig",
    "DashboardConfig",
    "FeatureConfig",
    "IngestConfig",
    "InputLimitsConfig",
    "InteractionConfig",
    "MonitorConfig",
    "OnlineConfig",
    "PrivacyConfig",
    "RecommenderConfig",
    "RecsysBenchConfig",
    "RepurchaseConfig",
    "ReportsConfig",
    "RetentionConfig",
    "RulesConfig",
    "SeededSection",
    "Section",
    "SegmentsConfig",
    "SequenceConfig",
    "ServingConfig",
    "Settings",
    "SoakConfig",
    "SynthConfig",
    "TrackingConfig",
    "TuneConfig",
    "TwoStageConfig",
    "TwoStageSources",
    "UpliftConfig",
    "load_settings",
]
