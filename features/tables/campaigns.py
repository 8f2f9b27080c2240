"""Retention campaigns on disk: WORKSPACE/campaigns/<id>/ (campaign.json, assignment.parquet, the CRM exports) and the
campaign's treated customers in the `offers` contract table.

A campaign folder is staged whole and renamed into place, so a reader sees a complete campaign or none; its treated
rows enter the offers table under offer ids derived from the campaign id, so writing them again replaces them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from features.tables.export import write_csv_or_parquet
from features.tables.store import read_table, write_json, write_parquet, write_table

TREATMENT, HOLDOUT = "treatment", "holdout"
META_FILE, ASSIGNMENT_FILE = "campaign.json", "assignment.parquet"
EXPORT_COLUMNS = ["customer_id", "offer_type", "cost", "preferred_channel", "top_reasons", "segment"]
_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")


@dataclass(frozen=True)
class Campaign:
    """A campaign's settings and its customers (one row each: arm, offer, segment, the plan's figures)."""

    meta: dict[str, Any]
    assignment: pd.DataFrame

    @property
    def id(self) -> str:
        """The campaign id (a slug of its name)."""
        return str(self.meta["id"])

    @property
    def sent_at(self) -> pd.Timestamp:
        """When the offers were sent: the first day of the outcome window."""
        return pd.Timestamp(self.meta["sent_at"])

    def treated(self) -> pd.DataFrame:
        """The customers sent an offer."""
        return self.assignment[self.assignment["arm"] == TREATMENT]


def campaign_id(name: str) -> str:
    """The id of a campaign name: lower-case letters, digits and dashes (ValueError naming `name` when none remain)."""
    slug = re.sub(r"[^a-z0-9]+", "-", str(name).lower()).strip("-")[:64].strip("-")
    if not slug:
        raise ValueError(f"name: {name!r} has no letter or digit to make a campaign id from")
    return slug


def campaign_path(campaigns_dir: Path, cid: str) -> Path:
    """The folder of campaign `cid` (LookupError for an id that cannot be one)."""
    if not _ID.match(str(cid)):
        raise LookupError(f"campaign id: no campaign {cid!r}")
    return Path(campaigns_dir) / cid


def read_campaign(campaigns_dir: Path, cid: str) -> Campaign:
    """A written campaign (LookupError when there is none by that id)."""
    path = campaign_path(campaigns_dir, cid)
    if not (path / META_FILE).is_file():
        raise LookupError(f"campaign id: no campaign {cid!r}")
    meta = json.loads((path / META_FILE).read_text())
    return Campaign(meta, pd.read_parquet(path / ASSIGNMENT_FILE))


def list_campaigns(campaigns_dir: Path) -> list[dict[str, Any]]:
    """Every campaign's settings, oldest first."""
    metas = [json.loads(p.read_text()) for p in Path(campaigns_dir).glob(f"*/{META_FILE}")]
    return sorted(metas, key=lambda m: (m.get("created_at", ""), m["id"]))


def write_campaign(campaigns_dir: Path, campaign: Campaign) -> Path:
    """Write the folder (settings, assignment, treated customers as CSV and Parquet) atomically; FileExistsError if
    the campaign is already there."""
    final = campaign_path(campaigns_dir, campaign.id)
    if final.exists():
        raise FileExistsError(f"name: campaign {campaign.id!r} exists")
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{campaign.id}."))
    try:
        write_parquet(campaign.assignment, staging / ASSIGNMENT_FILE)
        export = campaign.treated()[EXPORT_COLUMNS].reset_index(drop=True)
        write_csv_or_parquet(export, staging / "treated.csv")
        write_csv_or_parquet(export, staging / "treated.parquet")
        write_json(campaign.meta, staging / META_FILE)
        os.rename(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final


def offer_rows(campaign: Campaign) -> pd.DataFrame:
    """The treated customers as `offers` contract rows: randomised, not (yet) redeemed."""
    treated = campaign.treated().reset_index(drop=True)
    return pd.DataFrame(
        {
            "offer_id": [f"{campaign.id}:{n + 1}" for n in range(len(treated))],
            "customer_id": treated["customer_id"].astype(str),
            "sent_at": campaign.sent_at,
            "offer_type": treated["offer_type"].astype(str),
            "cost": treated["cost"].astype(float),
            "randomized": True,
            "redeemed_at": pd.Series(pd.NaT, index=treated.index, dtype="datetime64[ns]"),
        }
    )


def record_offers(tables_dir: Path, rows: pd.DataFrame) -> Path:
    """Put offer rows into the offers table, replacing rows with the same offer ids (atomic)."""
    existing = read_table(tables_dir, "offers")
    if existing is not None and len(existing):
        existing = existing[~existing["offer_id"].astype(str).isin(set(rows["offer_id"]))]
        ts = [c for c in ("sent_at", "redeemed_at") if c in existing]
        rows = rows.astype({c: existing[c].dtype for c in ts})
        rows = pd.concat([existing, rows], ignore_index=True)
    return write_table(rows, tables_dir, "offers")
