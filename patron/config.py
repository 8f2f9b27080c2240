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


class InputLimitsConfig(_Section):
    """Bounds on untrusted input files (features/ingest/bounded_read.py): a file past them is refused with a clear error."""

    max_file_bytes: int = Field(4_000_000_000, gt=0)  # bytes read from one file, counted after decompression
    max_rows: int = Field(100_000_000, gt=0)  # rows of one file (Parquet: as its metadata claims, before reading)
    max_field_chars: int = Field(10_000, gt=0)  # a longer value quarantines its row (the value is cut in quarantine)
    chunk_rows: int = Field(500_000, gt=0)  # delimited-text rows parsed at a time


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
    decay_half_lives_days: list[int] = [30, 45]  # exponentially decayed counts (recent purchases, tickets, returns)
    channel_shift_days: int = Field(90, gt=0)  # channel_shift: the channel mix of the last this many days vs before
    offer_ignored_after_days: int = Field(30, gt=0)  # an offer not redeemed this long after it was sent is ignored
    points_expiry_days: int | None = Field(None, gt=0)  # the retailer's rule: points lapse after this many days
                                                        # without points activity (None: they never lapse)
    rebuy_min_gaps: int = Field(20, gt=0)  # a re-bought category needs this many repeat gaps before the cutoff
    rebuy_same_item_share: float = Field(0.3, ge=0.0, le=1.0)  # ... and this share of them re-buying the same item
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
    pipeline: Literal["als", "two_stage"] = "als"  # two_stage: the `two_stage` section's candidates + ranker


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


class RetentionConfig(_Section):
    """`patron retention plan` and POST /retention/plan: default offers and the knapsack solver's limits."""

    offers: dict[str, float] = {
        "discount_voucher": 5.0, "free_delivery": 3.0, "double_points": 2.0, "personal_call": 8.0,
    }
    solver_max_pairs: int = Field(10_000, gt=0)  # exact MILP only up to this many (customer, offer) candidates
    solver_time_limit_s: float = Field(10.0, gt=0)
    solver_mip_rel_gap: float = Field(1e-4, ge=0.0)
    top_reasons: int = Field(3, ge=0)  # reasons joined into the plan's top_reasons column

    @model_validator(mode="after")
    def _costs(self) -> "RetentionConfig":
        bad = {k: v for k, v in self.offers.items() if not v > 0}
        if bad:
            raise ValueError(f"offers: every cost must be above 0, got {bad}")
        return self


class SegmentsConfig(_Section):
    """RFM quintiles, lifecycle stage and value tier (features/pit/segments.py)."""

    rfm_bins: int = Field(5, ge=2)
    new_max_tenure_days: float = Field(90.0, gt=0)  # signed up (or first bought) this recently: new
    lapsed_after_days: float = Field(180.0, gt=0)  # no purchase for this long (or never): lapsed
    at_risk_gap_ratio: float = Field(2.0, gt=0)  # days since the last purchase over the usual gap: at risk from here
    at_risk_after_days: float = Field(60.0, gt=0)  # one purchase day only (no usual gap): at risk after this
    value_tiers: dict[str, float] = {"high": 0.8, "medium": 0.5, "low": 0.0}  # tier -> CLV percentile lower bound

    @model_validator(mode="after")
    def _tiers(self) -> "SegmentsConfig":
        if not self.value_tiers or min(self.value_tiers.values()) != 0.0:
            raise ValueError("value_tiers needs a tier whose lower bound is 0.0")
        if self.at_risk_after_days >= self.lapsed_after_days:
            raise ValueError("at_risk_after_days must be below lapsed_after_days")
        return self


class UpliftConfig(_Section):
    """Offer uplift from randomised campaigns: meta-learners over LightGBM (training/uplift*.py)."""

    learners: list[Literal["t", "offset", "x"]] = Field(["t", "offset", "x"], min_length=1)  # chosen on validation
    offer_active_days: int = Field(60, gt=0)  # an offer sent this recently makes a customer ineligible
    max_campaign_days: int | None = Field(None, gt=0)  # None: every randomised campaign day with a full horizon
    valid_share: float = Field(0.2, gt=0.0, lt=0.5)  # customer-disjoint validation and test shares
    test_share: float = Field(0.2, gt=0.0, lt=0.5)
    seed: int = 42
    num_boost_round: int = Field(1000, gt=0)
    early_stopping_rounds: int = Field(50, gt=0)
    classifier_params: dict[str, Any] = {}
    regressor_params: dict[str, Any] = {}
    target_share: float = Field(0.2, gt=0.0, le=1.0)  # bench: share of customers a campaign can reach
    value_feature: str = "spend_365d"  # bench: value per customer retained (a point-in-time feature)
    bench_splits: int = Field(8, ge=1)  # bench: customer splits (seeds seed, seed + 1, ...) the figures are read over
    qini_bins: int = Field(100, ge=10)


class TrackingConfig(_Section):
    uri: str | None = None
    artifact_location: str | None = None
    experiment: str = "patron"
    recommender_model: str = "patron-recommender"
    churn_model: str = "patron-churn"
    clv_model: str = "patron-clv"
    uplift_model: str = "patron-uplift"
    sequence_model: str = "patron-sequence"
    champion_alias: str = "champion"


class ServingConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(3000, gt=0, lt=65536)
    workers: int = Field(1, gt=0)
    max_k: int = Field(100, gt=0)
    max_batch: int = Field(1000, gt=0)
    max_list_items: int = Field(100, gt=0)  # other request lists (categories, offers)
    champion_retry_s: float = Field(30.0, gt=0)
    retention_retry_max_s: float = Field(600.0, gt=0)  # the retention inputs' retries back off up to this
    inline_max_rows: int = Field(20, ge=0)  # requests this small run on the event loop (0: every one on a thread)
    request_timeout_s: float = Field(60.0, gt=0)
    blas_threads: int = Field(1, gt=0)  # per worker: requests already run side by side
    access_log: bool = False  # BentoML's line per request (Patron's own warnings and errors are logged either way)
    metrics: bool = True  # BentoML's Prometheus /metrics (request counts and durations per endpoint)


class AuthConfig(_Section):
    """API keys (serving/access/api_keys.py) and per-request limits checked before any handler (serving/access/auth.py)."""

    keys_file: Path | None = None  # None: WORKSPACE/api_keys.json; $PATRON_API_KEYS_FILE overrides both
    reload_check_s: float = Field(2.0, gt=0)  # the keys file is looked at no more often than this
    rate_per_s: float = Field(100.0, gt=0)  # per key for the whole service, split evenly across workers
    burst_s: float = Field(2.0, gt=0)  # a key may send this many seconds' worth of its rate at once
    max_body_bytes: int = Field(1_048_576, gt=0)  # larger request bodies get a 413


class OnlineConfig(_Section):
    backend: Literal["sqlite", "redis"] = "sqlite"
    sqlite_path: Path | None = None  # None: WORKSPACE/online.db
    sqlite_synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    sqlite_checkpoint_s: float = Field(0.2, ge=0)  # WAL checkpoint in a background thread; 0: inside a commit
    sqlite_wal_restart_mb: float = Field(32.0, gt=0)  # past this, the thread's checkpoint waits for writers once
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "patron"
    redis_require_fsync: bool = False  # refuse a Redis that could lose acknowledged events (no AOF fsync always)
    max_events: int = Field(500, gt=0)
    history_events: int = Field(100, gt=0)
    context_weight: float = Field(0.5, ge=0.0, le=1.0)
    rules_path: Path | None = None  # None: WORKSPACE/rules.yaml
    rules_check_s: float = Field(1.0, gt=0)
    reload_poll_s: float = Field(10.0, gt=0)
    candidate_pools: int = Field(64, gt=0)  # candidate item sets (stock x category filters) kept per worker


class AlertsConfig(_Section):
    """Churn alerts to the CRM when live service signals move a customer up a risk tier."""

    webhook_url: str = ""  # empty: alerts are logged, not delivered
    timeout_s: float = Field(5.0, gt=0)
    max_retries: int = Field(5, ge=0)
    backoff_s: float = Field(1.0, gt=0)  # wait before retry n: backoff_s * backoff_factor ** (n - 1)
    backoff_factor: float = Field(2.0, ge=1.0)
    min_interval_hours: float = Field(24.0, ge=0)  # at most one alert per customer per this period
    log_path: Path | None = None  # None: WORKSPACE/alerts.jsonl
    max_list: int = Field(1000, gt=0)  # GET /alerts: at most this many alerts per answer


class RepurchaseConfig(_Section):
    """Consumables back in /recommend when a customer's own repurchase cycle says they are due."""

    enabled: bool = True
    min_repeats: int = Field(2, ge=1)  # repeat purchases (gaps) of an item before its cycle is trusted
    due_factor: float = Field(0.9, gt=0)  # due when days since the last purchase >= interval * due_factor
    forget_after_cycles: float = Field(3.0, gt=0)  # overdue by more cycles than this: lapsed, no longer due
    max_items: int = Field(3, ge=0)  # due items blended into one answer
    weight: float = Field(0.6, ge=0.0, le=1.0)  # their reciprocal-rank-fusion weight against the base ranking
    clock: Literal["events", "wall"] = "events"  # events: today = latest of batch history and live events


class PrivacyConfig(_Section):
    """Right to be forgotten and pseudonymous customer ids in logs (features/privacy/erasure.py, features/privacy/pseudonyms.py)."""

    salt_path: Path | None = None  # None: WORKSPACE/privacy/salt (created once, never shown)
    salt_bytes: int = Field(32, ge=16)
    erasure_log_path: Path | None = None  # None: WORKSPACE/privacy/erasure_log.jsonl (salted hash + date only)
    log_id_chars: int = Field(12, ge=8, le=64)  # hex characters of a customer's salted hash shown in logs
    # Workspace folders `patron forget` leaves as they are: the original source files (a re-ingest consults the
    # erasure log instead) and the MLflow artifact store (models, plots, aggregates: no customer rows).
    keep_dirs: list[str] = ["raw", "mlartifacts"]


class BatchRecommendConfig(_Section):
    """`patron recommend batch`: every customer's recommendations to a file."""

    k: int = Field(20, gt=0)
    workers: int | None = Field(None, gt=0)  # None: one per core
    chunk_customers: int = Field(250, gt=0)  # customers per task handed to a worker


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
    sequence: bool = False  # the `sequence` section's next-item model (training/recommend/sequence.py)


class SequenceConfig(_Section):
    architecture: Literal["sasrec", "gru"] = "gru"
    dim: int = Field(64, gt=0)
    blocks: int = Field(1, gt=0)
    heads: int = Field(1, gt=0)
    dropout: float = Field(0.2, ge=0.0, lt=1.0)
    max_len: int = Field(50, gt=1)
    epochs: int = Field(10, gt=0)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0.0)
    batch_size: int = Field(128, gt=0)
    negatives: int = Field(256, ge=0)  # sampled-softmax negatives shared by a batch; 0: full softmax over all items
    seed: int = 42
    threads: int = Field(2, gt=0)
    device: Literal["cpu", "cuda"] = "cpu"
    k: int = Field(10, gt=0)  # `patron train sequence`: metrics @k on each customer's last purchase

    @model_validator(mode="after")
    def _heads_divide_dim(self) -> "SequenceConfig":
        if self.dim % self.heads:
            raise ValueError(f"sequence.heads ({self.heads}) must divide sequence.dim ({self.dim})")
        return self


class TwoStageConfig(_Section):
    sources: TwoStageSources = TwoStageSources()
    ranker: bool = True                 # False: candidates ordered by the sum of their sources' reciprocal ranks
    label_windows: int = Field(2, ge=1)  # ranker training windows: validation, then earlier eighths of train
    candidates_per_source: int = Field(100, gt=0)
    copurchase_window: int = Field(5, gt=0)
    recent_items: int = Field(20, gt=0)
    recency_decay: float = Field(0.8, gt=0.0, le=1.0)
    trend_days: int = Field(30, gt=0)
    price_bands: int = Field(4, ge=0)  # ranker: customers' price bands (quantiles of price position; 0: off)
    price_band_shrink: float = Field(0.5, ge=0.0, le=1.0)  # a band's item shares shrunk this far to the overall
    price_choice_levels: int = Field(21, ge=0)  # ranker: price sensitivities of the mixed-logit choice (0: off)
    price_choice_range: tuple[float, float] = (-2.0, 2.0)  # lowest and highest sensitivity of that grid
    price_choice_iterations: int = Field(20, gt=0)  # EM rounds of the mixed logit
    as_of_recent_days: int = Field(90, gt=0)  # ranker's item_recent_share_as_of: days before each customer's moment
    category_prior_weight: float = Field(1.0, ge=0.0)  # pseudo-purchases of the overall category mix in a
    # customer's smoothed category share (ranker's choice-model features)
    complement_days: int = Field(10, gt=0)  # ranker's pending_complement: items bought within these days after
    browsing_events: list[str] = ["view"]  # event types behind the ranker's browsing features ([]: none)
    browsing_weight: float = Field(0.3, ge=0.0)  # a browsed item's weight beside a purchase (1) in ALS/item-item/EASE
    browsing_labels: bool = True  # the ranker also learns from new items browsed in its label windows
    threads: int = Field(2, gt=0)
    seed: int = 42
    num_boost_round: int = Field(1000, gt=0)
    early_stopping_rounds: int = Field(100, gt=0)
    early_stopping_share: float = Field(0.15, gt=0.0, lt=1.0)
    ranker_params: dict[str, Any] = {}


class RecsysBenchConfig(_Section):
    trials: int = Field(20, gt=0)
    k: int = Field(10, gt=0)
    cold_max_train: int = Field(5, gt=0)  # cold slice: customers with fewer training interactions than this
    seed: int = 42
    threads: int = Field(2, gt=0)
    peers: list[str] = ["popularity", "als", "bpr", "cosine", "bm25", "ease"]
    browsing_peers: list[str] = ["ease"]  # also tuned on purchases + browsing events, where the data has them
    ablation: bool = True  # also run the two-stage pipeline without the ranker and without each source
    ablation_seeds: int = Field(5, gt=0)  # ranker seeds averaged for the pipeline and each "without <source>" row
    elimination_margin: float = Field(0.001, ge=0)  # a source is kept only if it adds more than this on validation
    rescore_top: int = Field(3, gt=0)  # the best TPE trials of the two-stage search scored again with a fresh seed
    elimination_seeds: int = Field(3, gt=0)  # ranker seeds averaged for each configuration the elimination measures
    elimination_z: float = Field(2.0, ge=0)  # a source must add this many standard deviations of the seeds' noise
    elimination_rechecks: int = Field(1, ge=0)  # kept sources tried again once the noise estimate has settled
    elimination_ranker: bool = True  # the elimination also tries the pipeline without its LightGBM ranker


class TuneConfig(_Section):
    """`patron tune recommender`: an Optuna study of the recommender (ALS, or the two-stage pipeline when configured)
    on the validation window."""

    trials: int = Field(20, gt=0)
    study: str = "recommender"
    seed: int = 42
    storage: str | None = None          # None: optuna.db beside a SQLite tracking store (MLflow's own file cannot
    sqlite_file: str = "optuna.db"      # hold both: they share alembic's version table); set it for a server
    storage_open_attempts: int = Field(3, gt=0)  # workers starting together race to create the study schema
    iteration_block: int = Field(5, gt=0)   # ALS iterations between intermediate validation scores (pruning)
    max_iterations: int = Field(40, gt=0)
    pruner_startup_trials: int = Field(3, ge=0)
    pruner_warmup_blocks: int = Field(1, ge=0)
    factors: tuple[int, int] = (16, 256)                  # log-uniform search ranges
    regularization: tuple[float, float] = (1e-3, 10.0)
    alpha: tuple[float, float] = (0.1, 50.0)
    candidate_alias: str = "candidate"


class ChurnTuneConfig(_Section):
    """`patron tune churn`: an Optuna study of the churn booster on the validation cutoff (never the test cutoff)."""

    trials: int = Field(20, gt=0)
    study: str = "churn"
    seed: int = 42
    report_every_rounds: int = Field(25, gt=0)  # boosting rounds between validation log-loss reports (pruning)
    pruner_startup_trials: int = Field(3, ge=0)
    pruner_warmup_steps: int = Field(2, ge=0)
    num_leaves: tuple[int, int] = (4, 63)  # search ranges, log-uniform
    min_data_in_leaf: tuple[int, int] = (10, 400)
    lambda_l2: tuple[float, float] = (0.01, 100.0)
    learning_rate: tuple[float, float] = (0.01, 0.1)
    feature_fraction: tuple[float, float] = (0.4, 1.0)  # uniform


class MonitorConfig(_Section):
    """`patron monitor`: drift of live features, churn scores and recommendation coverage against training."""

    bins: int = Field(10, ge=2)                          # quantile bins per numeric feature (training data's edges)
    psi_epsilon: float = Field(1e-4, gt=0)               # floor on a bin's share, so an empty bin stays finite
    feature_psi_max: float = Field(0.25, gt=0)           # PSI above this flags a feature (and event unit prices)
    score_psi_max: float = Field(0.25, gt=0)             # PSI of the churn scores
    coverage_drop_max: float = Field(0.5, ge=0, le=1)    # relative drop of recommendation coverage from training
    ignore_features: list[str] = []                      # patterns (fnmatch) of features reported, never flagged
    seed: int = 42                                       # customer sample for the coverage check


class SoakConfig(_Section):
    """`patron bench soak` (benchmarks/soak.py): steady mixed traffic on the real service, memory sampled over time."""

    rate_per_s: float = Field(100.0, gt=0)
    mix: dict[str, float] = {"recommend": 0.6, "churn": 0.2, "events": 0.2}  # share of requests per endpoint
    interval_s: float = Field(60.0, gt=0)  # latency percentiles and errors are reported per interval
    sample_s: float = Field(5.0, gt=0)  # resident memory of the server processes is sampled this often
    warmup_share: float = Field(0.2, ge=0, lt=1)  # memory growth is measured from the end of this share of the run
    max_memory_growth: float = Field(0.10, gt=0)  # the soak fails at this growth or more (and at any error)
    port: int = 3918
    seed: int = 42


class DashboardConfig(_Section):
    """GET /dashboard: the CRM manager's page of at-risk customers, segments and the retention plan."""

    top: int = Field(500, gt=0)                  # riskiest active customers listed
    history: int = Field(10, gt=0)               # recent events in a customer's detail
    budget: float = Field(500.0, ge=0)           # retention budget planned (the chart runs from 0 to it)
    budget_steps: int = Field(8, ge=2)           # budgets on the expected-value chart


class ReportsConfig(_Section):
    """`patron report` (self-contained HTML reports) and `patron compare` (champion vs latest candidate)."""

    out_dir: Path | None = None                  # None: WORKSPACE/reports
    n_boot: int = Field(1000, ge=10)             # bootstrap resamples of the compared metric's difference
    ci_level: float = Field(0.95, gt=0.5, lt=1.0)
    seed: int = 42                               # bootstrap resampling seed
    budget_points: int = Field(12, ge=2)         # budgets on the retention profit curve (0 to funding every offer)
    example_customers: int = Field(5, gt=0)      # recommender report: customers shown with their history
    history_items: int = Field(8, gt=0)          # their latest purchases shown beside the recommendations
    lift_bins: int = Field(10, ge=2)             # churn report: quantile bins of the lift chart


class Settings(_Section):
    """All of Patron's configuration."""

    workspace: Path = Path("./workspace")
    ingest: IngestConfig = IngestConfig()
    input_limits: InputLimitsConfig = InputLimitsConfig()
    synth: SynthConfig = SynthConfig()
    features: FeatureConfig
    recommender: RecommenderConfig = RecommenderConfig()
    churn: ChurnConfig
    tracking: TrackingConfig = TrackingConfig()
    serving: ServingConfig = ServingConfig()
    bench: BenchConfig = BenchConfig()
    clv: CLVConfig = CLVConfig()
    segments: SegmentsConfig = SegmentsConfig()
    uplift: UpliftConfig = UpliftConfig()
    retention: RetentionConfig = RetentionConfig()
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
    tune: TuneConfig = TuneConfig()
    churn_tune: ChurnTuneConfig = ChurnTuneConfig()
    monitor: MonitorConfig = MonitorConfig()
    dashboard: DashboardConfig = DashboardConfig()
    soak: SoakConfig = SoakConfig()
    reports: ReportsConfig = ReportsConfig()

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
    def reports_dir(self) -> Path:
        return self.reports.out_dir or self.workspace / "reports"

    @property
    def alerts_log(self) -> Path:
        return self.alerts.log_path or self.workspace / "alerts.jsonl"

    @property
    def api_keys_file(self) -> Path:
        return self.auth.keys_file or self.workspace / "api_keys.json"

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
    if os.environ.get("PATRON_API_KEYS_FILE"):
        data = _deep_merge(data, {"auth": {"keys_file": os.environ["PATRON_API_KEYS_FILE"]}})
    data = _deep_merge(data, overrides)
    settings = Settings.model_validate(data)
    ws = settings.workspace
    if not ws.is_absolute():
        ws = Path.cwd() / ws
    return settings.model_copy(update={"workspace": ws.resolve()})
