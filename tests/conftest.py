"""Shared fixtures: a small trained and promoted workspace, and a real BentoML server over it."""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pandas as pd
import pytest
import yaml

from patron.config import DEFAULT_CONFIG, Settings, load_settings
from serving.access.api_keys import SCOPES, add_key
from serving.server import stop_server  # noqa: F401 - re-exported for the test modules

# Small enough to train in seconds; the time windows fit inside 400 days of history.
SMALL_CONFIG = {
    "extends": str(DEFAULT_CONFIG),
    "synth": {"customers": 600, "items": 200, "days": 400},
    "features": {
        "lookback_days": 120,
        "horizon_days": 60,
        "train_cutoffs_days_before_end": [240, 210, 180],
        "valid_cutoff_days_before_end": 120,
        "test_cutoff_days_before_end": 60,
    },
    "recommender": {"factors": 16, "iterations": 5},
    "churn": {"num_boost_round": 150, "early_stopping_rounds": 20},
    "serving": {"champion_retry_s": 1},
}
OUT_OF_STOCK_SHARE = 0.2
SYNTH_SEED = 7  # the small retailer is drawn with its own seed; the models keep the configured one (42)
SERVER_START_TIMEOUT_S = 180
# Every test server accepts this all-scope key (sent in Server.headers), unthrottled for the load tests.
TEST_API_KEY = "patron_test_" + secrets.token_urlsafe(24)
TEST_KEY_NAME = "tests"
TEST_KEY_RATE_PER_S = 1e6


@dataclass(frozen=True)
class Workspace:
    """A workspace on disk with the config file that describes it."""

    settings: Settings
    config: Path


@dataclass(frozen=True)
class Server:
    """A running BentoML server and how it was started."""

    url: str
    workspace: Workspace
    startup_s: float
    log: Path
    headers: dict[str, str] = field(default_factory=dict)  # what every test request sends (e.g. an API key)

    def client(self, **kwargs) -> httpx.Client:
        """An HTTP client for this server that sends `headers` on every request."""
        return httpx.Client(base_url=self.url, headers=self.headers, **kwargs)


def small_workspace(root: Path) -> Workspace:
    """A config file for a small workspace under `root` and its settings."""
    root.mkdir(parents=True, exist_ok=True)
    config = root / "patron.yaml"
    config.write_text(yaml.safe_dump({**SMALL_CONFIG, "workspace": str(root / "workspace")}))
    return Workspace(settings=load_settings(config), config=config)


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mark_out_of_stock(settings: Settings, share: float, seed: int) -> None:
    from features.tables.store import read_table, write_table

    products = read_table(settings.tables_dir, "products")
    gone = products["item_id"].sample(frac=share, random_state=seed)
    products["in_stock"] = ~products["item_id"].isin(gone)
    write_table(products, settings.tables_dir, "products")


@pytest.fixture(scope="session")
def ingested_workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """Synthetic data generated and ingested (no models), with a fifth of the items out of stock."""
    from features.ingest.pipeline import ingest_source
    from features.synthetic.generate import generate

    ws = small_workspace(tmp_path_factory.mktemp("patron"))
    generate(ws.settings, seed=SYNTH_SEED)
    ingest_source(ws.settings, "synthetic")
    _mark_out_of_stock(ws.settings, OUT_OF_STOCK_SHARE, seed=SYNTH_SEED)
    return ws


@pytest.fixture(scope="session")
def trained_workspace(ingested_workspace: Workspace) -> Workspace:
    """The ingested workspace with both models trained, registered and promoted to champion."""
    from training.churn.train import train_churn
    from training.mlops.registry import promote
    from training.recommend.train import train_recommender

    settings = ingested_workspace.settings
    train_recommender(settings)
    train_churn(settings)
    promote(settings, "recommender")
    promote(settings, "churn")
    return ingested_workspace


@pytest.fixture(scope="session")
def refusing_customer(trained_workspace: Workspace) -> str:
    """A customer the champion recommender personalises for, whose consent row now refuses personalisation."""
    from features.tables.store import read_table, write_table
    from serving.champions.load import load_recommender_champion

    settings = trained_workspace.settings
    recommender, _ = load_recommender_champion(settings)
    buyers = purchases(settings)["customer_id"].value_counts().index
    customer = next(c for c in buyers if recommender.knows_customer(c))
    consent = read_table(settings.tables_dir, "consent")
    row = pd.DataFrame(
        {
            "customer_id": [customer],
            "personalization": [False],
            "marketing": [False],
            "updated_at": [pd.Timestamp.now().floor("s")],
        }
    )
    if consent is None:
        consent = row
    else:
        row = row.astype(consent.dtypes.to_dict())
        consent = pd.concat([consent[consent["customer_id"] != customer], row], ignore_index=True)
    write_table(consent, settings.tables_dir, "consent")
    return customer


def start_patron_server(
    ws: Workspace, log: Path, ready_timeout_s: float = SERVER_START_TIMEOUT_S, wait_ready: bool = True
) -> tuple[subprocess.Popen, Server]:
    """Start the real server on a free port and wait for /readyz 200 (or only /livez when wait_ready=False)."""
    from serving.server import start_server

    add_key(ws.settings.api_keys_file, TEST_KEY_NAME, TEST_API_KEY, list(SCOPES), TEST_KEY_RATE_PER_S, replace=True)
    headers = {"Authorization": f"Bearer {TEST_API_KEY}"}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    with log.open("w") as fh:
        proc = start_server(ws.settings, port=port, config=ws.config, log=fh)
    probe = "/readyz" if wait_ready else "/livez"
    while time.monotonic() - started < ready_timeout_s:
        if proc.poll() is not None:
            break
        try:
            if httpx.get(url + probe, timeout=2).status_code == 200:
                return proc, Server(
                    url=url, workspace=ws, startup_s=time.monotonic() - started, log=log, headers=headers
                )
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    stop_server(proc)
    pytest.fail(
        f"server did not answer {probe} with 200 within {ready_timeout_s}s "
        f"(exit code {proc.returncode}); log:\n{log.read_text()}"
    )


@pytest.fixture(scope="session")
def patron_server(
    trained_workspace: Workspace, refusing_customer: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """The real BentoML server over the trained workspace, ready; stopped at the end of the session."""
    proc, server = start_patron_server(trained_workspace, tmp_path_factory.mktemp("server") / "server.log")
    yield server
    stop_server(proc)


@pytest.fixture(scope="session")
def unpromoted_workspace(ingested_workspace: Workspace, tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """A workspace with the same tables but an empty model registry."""
    ws = small_workspace(tmp_path_factory.mktemp("unpromoted"))
    shutil.copytree(ingested_workspace.settings.tables_dir, ws.settings.tables_dir)
    return ws


def purchases(settings: Settings) -> pd.DataFrame:
    """customer_id, item_id of every purchase event in the workspace."""
    from features.tables.store import read_table

    events = read_table(settings.tables_dir, "events", columns=["customer_id", "item_id", "type"])
    return events.loc[events["type"] == "purchase", ["customer_id", "item_id"]]
