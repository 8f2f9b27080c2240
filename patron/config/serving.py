"""Settings of the service (serving/): HTTP limits, API keys, the online store, business rules, alerts, batch jobs,
the retention plan and its offers, and the dashboard."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from patron.config.section import Section, SeededSection


class ServingConfig(Section):
    """The BentoML service: address, workers and per-request bounds."""

    host: str = "127.0.0.1"
    port: int = Field(3000, gt=0, lt=65536)
    workers: int = Field(1, gt=0)
    max_k: int = Field(100, gt=0)
    max_batch: int = Field(1000, gt=0)
    max_list_items: int = Field(100, gt=0)  # other request lists (/recommend categories, /retention/plan offers)
    champion_retry_s: float = Field(30.0, gt=0)  # while not ready, how often /readyz retries loading the champions
    retention_retry_max_s: float = Field(600.0, gt=0)  # CLV/uplift inputs failing to load: retried from 30 s up to this
    # Requests this small (/recommend, /churn, /events) run on the worker's event loop (no thread hand-off: less tail),
    # larger ones on its handler thread (0: every one on a thread)
    inline_max_rows: int = Field(20, ge=0)
    request_timeout_s: float = Field(60.0, gt=0)  # BentoML traffic timeout for one request
    blas_threads: int = Field(1, gt=0)  # per worker (more only spin: requests already run side by side in threads)
    access_log: bool = False  # BentoML's line per request (Patron's own warnings and errors are logged either way)
    metrics: bool = True  # BentoML's Prometheus /metrics (request counts and durations per endpoint)


class AuthConfig(Section):
    """API keys (serving/access/api_keys.py) and per-request limits checked before any handler
    (serving/access/auth.py)."""

    # None: WORKSPACE/api_keys.json (hashed keys; `patron keys create|list|revoke`); $PATRON_API_KEYS_FILE overrides
    # both. No file or no key: every non-health request is a 401
    keys_file: Path | None = None
    reload_check_s: float = Field(2.0, gt=0)  # the keys file is looked at no more often than this
    rate_per_s: float = Field(100.0, gt=0)  # per key for the whole service, split evenly across workers (429 above)
    burst_s: float = Field(2.0, gt=0)  # a key may send this many seconds' worth of its rate at once
    max_body_bytes: int = Field(1_048_576, gt=0)  # larger request bodies get a 413


class OnlineConfig(Section):
    """The online store shared by all serving workers: live events, signals and purchases."""

    backend: Literal["sqlite", "redis"] = "sqlite"  # sqlite: embedded, WAL mode; redis: the production profile
    sqlite_path: Path | None = None  # None: WORKSPACE/online.db
    # WAL + NORMAL: a committed event survives a crash of the service (FULL: of the OS too)
    sqlite_synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    # WAL checkpoint in a background thread this often; 0: inside the commit that fills the log (10-20 ms there)
    sqlite_checkpoint_s: float = Field(0.2, ge=0)
    sqlite_wal_restart_mb: float = Field(32.0, gt=0)  # past this, the thread's checkpoint waits for writers once
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "patron"  # every Redis key starts with this
    # True: not ready unless Redis fsyncs every write (appendonly yes, appendfsync always)
    redis_require_fsync: bool = False
    max_events: int = Field(500, gt=0)  # POST /events: at most this many events per request
    history_events: int = Field(100, gt=0)  # a customer's latest events folded into the factor model per request
    context_weight: float = Field(0.5, ge=0.0, le=1.0)  # /recommend context_item_ids: share given to similar items
    rules_path: Path | None = None  # None: WORKSPACE/rules.yaml (the live rules file, same keys as `rules`)
    rules_check_s: float = Field(1.0, gt=0)  # how often the service looks for a changed rules file
    reload_poll_s: float = Field(10.0, gt=0)  # how often the service checks whether a champion alias moved
    candidate_pools: int = Field(64, gt=0)  # candidate item sets (stock x category filters) kept per worker


class RulesConfig(Section):
    """Business rules; WORKSPACE/rules.yaml (same keys) overrides them without a restart."""

    in_stock_only: bool = True  # never recommend out-of-stock items (POST /items/stock updates stock live)
    include_categories: list[str] = []  # non-empty: only these categories
    exclude_categories: list[str] = []
    max_per_category: int | None = Field(None, gt=0)  # at most this many items of one category per answer
    boost_items: dict[str, float] = {}  # item_id -> score multiplier (clipped to [1/max_boost, max_boost])
    boost_categories: dict[str, float] = {}  # category -> score multiplier (clipped likewise)
    max_boost: float = Field(2.0, ge=1.0)


class AlertsConfig(Section):
    """Churn alerts to the CRM when live service signals (tickets, surveys, returns) move a customer up a risk tier."""

    webhook_url: str = ""  # the CRM's endpoint (POST, JSON body); empty: alerts are logged, not delivered
    timeout_s: float = Field(5.0, gt=0)  # per delivery attempt
    max_retries: int = Field(5, ge=0)  # attempts after the first one fails
    backoff_s: float = Field(1.0, gt=0)  # wait before retry n: backoff_s * backoff_factor ** (n - 1)
    backoff_factor: float = Field(2.0, ge=1.0)
    min_interval_hours: float = Field(24.0, ge=0)  # at most one alert per customer per this period
    log_path: Path | None = None  # None: WORKSPACE/alerts.jsonl (append-only, every alert and delivery outcome)
    max_list: int = Field(1000, gt=0)  # GET /alerts: at most this many alerts per answer


class BatchRecommendConfig(Section):
    """`patron recommend batch`: every customer's recommendations to a file."""

    k: int = Field(20, gt=0)
    workers: int | None = Field(None, gt=0)  # None: one per core
    chunk_customers: int = Field(250, gt=0)  # customers per task handed to a worker


class RetentionConfig(Section):
    """`patron retention plan` and POST /retention/plan: the offers and the knapsack solver's limits."""

    # The retailer's offer catalogue: offer type -> cost. The retention plan's default offers, and the offers the
    # synthetic retailer sends at these costs (features/synthetic/), so the uplift model learns the same types.
    offers: dict[str, float] = {
        "discount_voucher": 5.0,
        "free_delivery": 3.0,
        "double_points": 2.0,
        "personal_call": 8.0,
    }
    solver_max_pairs: int = Field(10_000, gt=0)  # exact MILP only up to this many (customer, offer) candidates
    solver_time_limit_s: float = Field(10.0, gt=0)  # the MILP's best plan so far after this (or the greedy's)
    solver_mip_rel_gap: float = Field(1e-4, ge=0.0)  # the greedy is kept when this close to its LP bound
    top_reasons: int = Field(3, ge=0)  # churn reasons joined into the plan's top_reasons column

    @model_validator(mode="after")
    def _costs(self) -> RetentionConfig:
        bad = {k: v for k, v in self.offers.items() if not v > 0}
        if bad:
            raise ValueError(f"offers: every cost must be above 0, got {bad}")
        return self


class CampaignConfig(SeededSection):
    """`patron campaign` and /campaigns: a retention plan sent with a random holdout, and its readout."""

    holdout: float = Field(0.1, gt=0.0, le=0.5)  # share of the planned customers kept as the no-offer control group
    # The readout's outcome window after the send day (None: features.horizon_days, the churn label's horizon, so
    # "retained" means what "not churned" means to the churn and uplift models).
    outcome_days: int | None = Field(None, gt=0)
    confidence: float = Field(0.95, gt=0.5, lt=1.0)  # of the readout's intervals
    bootstrap: int = Field(2000, ge=100)  # seeded bootstrap resamples per interval
    min_arm_customers: int = Field(30, ge=1)  # fewer in either arm: "too few customers for a verdict"


class DashboardConfig(Section):
    """GET /dashboard (serving/dashboard/view.py): the CRM manager's page of at-risk customers, segments and the
    retention plan."""

    top: int = Field(500, gt=0)  # riskiest active customers listed
    history: int = Field(10, gt=0)  # recent events in a customer's detail
    budget: float = Field(500.0, ge=0)  # retention budget planned (the chart runs from 0 to it)
    budget_steps: int = Field(8, ge=2)  # budgets on the expected-value chart
    kpi_months: int = Field(12, gt=0)  # calendar months of loyalty KPIs on the campaigns page (the current one last)
    kpi_segment_months: int = Field(3, gt=0)  # the latest months the per-segment loyalty KPIs cover
