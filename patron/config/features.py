"""Settings of the data layer (features/): ingest, input limits, the synthetic retailer, point-in-time features,
segments, repurchase cycles and privacy."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from patron.config.section import Section


class IngestConfig(Section):
    """`patron data ingest` and `patron data get`."""

    max_quarantine_share: float = Field(0.05, ge=0.0, le=1.0)  # fail when more of a table than this is quarantined
    download_timeout_s: float = Field(10.0, gt=0)  # `patron data get`: wait this long for a dataset's official address
    max_validation_passes: int = Field(10, ge=1)  # validate, quarantine failing rows, re-validate: at most this often


class InputLimitsConfig(Section):
    """Bounds on untrusted input files (features/ingest/bounded_read.py): past one, the file is refused with a clear
    error."""

    max_file_bytes: int = Field(4_000_000_000, gt=0)  # bytes read from one file, counted after decompression
    max_rows: int = Field(100_000_000, gt=0)  # rows of one file (Parquet: as its metadata claims, before reading)
    max_field_chars: int = Field(10_000, gt=0)  # a longer value quarantines its row (the value is cut in quarantine)
    chunk_rows: int = Field(500_000, gt=0)  # delimited-text rows parsed at a time


class SynthConfig(Section):
    """`patron data synth`: the simulated demo retailer (its random draws start from Settings.seed; its offers and
    their costs are retention.offers)."""

    customers: int = Field(5000, ge=10)
    items: int = Field(1000, ge=20)
    days: int = Field(540, ge=60)
    start_date: date = date(2025, 1, 1)
    chunk_customers: int = Field(10_000, ge=100)  # customers simulated per chunk (bounds memory: ~0.7 GB peak at 10k)
    oracle_replicas: int = Field(64, ge=1)  # Monte-Carlo replicas of the horizon per customer for the churn oracle
    campaign_every_days: int = Field(30, gt=0)  # a randomised retention campaign every this many days
    campaign_share: float = Field(0.15, ge=0.0, le=1.0)  # share of (observably) active customers drawn into each
    offer_effect_days: int = Field(60, gt=0)  # how long an offer changes a customer's dropout hazard
    # `patron data synth --play-campaign`: share of treated customers buying while their offer runs who redeem it
    campaign_redemption: float = Field(0.6, ge=0.0, le=1.0)


class InteractionConfig(Section):
    """The weighted, time-decayed interactions the recommender learns from (features/pit/interactions.py)."""

    event_weights: dict[Literal["view", "cart", "purchase", "return"], float] = {
        "view": 1.0,
        "cart": 3.0,
        "purchase": 8.0,
        "return": -4.0,
    }
    half_life_days: float = Field(120.0, gt=0)  # time decay of an interaction's weight, counted back from the cutoff
    min_weight: float = 0.0  # interactions whose summed weight falls to this or below are dropped


class FeatureConfig(Section):
    """Point-in-time customer features, churn labels and the cutoffs they are computed at (features/pit/)."""

    windows_days: list[int] = [30, 90, 180, 365]
    decay_half_lives_days: list[int] = [30, 45]  # exponentially decayed counts (recent purchases, tickets, returns)
    channel_shift_days: int = Field(90, gt=0)  # channel_shift: the channel mix of the last this many days vs before
    offer_ignored_after_days: int = Field(30, gt=0)  # an offer not redeemed this long after it was sent is ignored
    # The retailer's rule: points lapse after this many days without points activity (days_until_points_lapse;
    # None: they never lapse, no such feature)
    points_expiry_days: int | None = Field(None, gt=0)
    rebuy_min_gaps: int = Field(20, gt=0)  # a re-bought category needs this many repeat gaps before the cutoff
    rebuy_same_item_share: float = Field(0.3, ge=0.0, le=1.0)  # ... and this share of them re-buying the same item
    lookback_days: int = Field(180, gt=0)  # a customer is "active" at the cutoff with a purchase in this window
    horizon_days: int = Field(90, gt=0)  # churn label: active, and no purchase in [cutoff, cutoff + horizon)
    # Cutoffs are days before the end of the data (the day after the last event). 17 stacked churn training cutoffs,
    # every 15 days from 510 to 270 days before the end (on the synthetic retailer's validation cutoff, log loss 0.1912
    # vs 0.1936 with 7 from 360, mean of 5 seeds: docs/benchmarks.md); a cutoff before the data starts adds no rows.
    train_cutoffs_days_before_end: list[int] = list(range(510, 269, -15))
    valid_cutoff_days_before_end: int = 180
    test_cutoff_days_before_end: int = 90
    interactions: InteractionConfig = InteractionConfig()
    duckdb_threads: int | None = Field(None, gt=0)  # None: DuckDB's default (all cores)
    duckdb_memory_limit: str | None = None  # e.g. "4GB"; None: DuckDB's default (80% of RAM, spills to disk beyond)

    @model_validator(mode="after")
    def _time_ordered(self) -> FeatureConfig:
        h = self.horizon_days
        if self.test_cutoff_days_before_end < h:
            raise ValueError("test_cutoff_days_before_end must leave a full horizon before the end of the data")
        if self.valid_cutoff_days_before_end < self.test_cutoff_days_before_end + h:
            raise ValueError("the validation label window must end before the test cutoff")
        if min(self.train_cutoffs_days_before_end) < self.valid_cutoff_days_before_end + h:
            raise ValueError("every training label window must end before the validation cutoff")
        return self


class SegmentsConfig(Section):
    """RFM quintiles, lifecycle stage and value tier (features/pit/segments.py)."""

    rfm_bins: int = Field(5, ge=2)  # quantile scores 1..rfm_bins, the highest best
    new_max_tenure_days: float = Field(90.0, gt=0)  # signed up (or first bought) this recently: new
    lapsed_after_days: float = Field(180.0, gt=0)  # no purchase for this long (or never): lapsed
    lapsed_gap_ratio: float = Field(4.0, gt=0)  # days since the last purchase over the usual gap: lapsed from here
    at_risk_gap_ratio: float = Field(2.0, gt=0)  # days since the last purchase over the usual gap: at risk from here
    at_risk_after_days: float = Field(60.0, gt=0)  # one purchase day only (no usual gap): at risk after this
    value_tiers: dict[str, float] = {"high": 0.8, "medium": 0.5, "low": 0.0}  # tier -> CLV percentile lower bound

    @model_validator(mode="after")
    def _tiers(self) -> SegmentsConfig:
        if not self.value_tiers or min(self.value_tiers.values()) != 0.0:
            raise ValueError("value_tiers needs a tier whose lower bound is 0.0")
        if self.at_risk_after_days >= self.lapsed_after_days:
            raise ValueError("at_risk_after_days must be below lapsed_after_days")
        if self.lapsed_gap_ratio <= self.at_risk_gap_ratio:
            raise ValueError("lapsed_gap_ratio must be above at_risk_gap_ratio")
        return self


class RepurchaseConfig(Section):
    """Consumables back in /recommend when a customer's own repurchase cycle says they are due."""

    enabled: bool = True
    min_repeats: int = Field(2, ge=1)  # repeat purchases (gaps) of an item before its cycle (median gap) is trusted
    due_factor: float = Field(0.9, gt=0)  # due when days since the last purchase >= interval * due_factor
    forget_after_cycles: float = Field(3.0, gt=0)  # overdue by more cycles than this: lapsed, no longer due
    max_items: int = Field(3, ge=0)  # due items blended into one answer ("time to restock")
    weight: float = Field(0.6, ge=0.0, le=1.0)  # their reciprocal-rank-fusion weight against the base ranking
    clock: Literal["events", "wall"] = "events"  # events: today = latest of batch history and live events


class PrivacyConfig(Section):
    """Right to be forgotten (`patron forget`, POST /admin/erase) and pseudonymous customer ids in logs
    (features/privacy/erasure.py, features/privacy/pseudonyms.py)."""

    salt_path: Path | None = None  # None: WORKSPACE/privacy/salt (created once, never shown)
    salt_bytes: int = Field(32, ge=16)
    erasure_log_path: Path | None = None  # None: WORKSPACE/privacy/erasure_log.jsonl (salted hash + date only)
    log_id_chars: int = Field(12, ge=8, le=64)  # hex characters of a customer's salted hash shown in logs
    # Workspace folders `patron forget` leaves as they are: the original source files (a re-ingest consults the
    # erasure log instead) and the MLflow artifact store (models, plots, aggregates: no customer rows).
    keep_dirs: list[str] = ["raw", "mlartifacts"]
