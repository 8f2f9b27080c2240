"""The production profile: an MLflow tracking server backed by the real PostgreSQL, used by training and promotion."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest

from patron.config import CONFIG_DIR, load_settings

PG = "postgresql://postgres@127.0.0.1:5432"
pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """A real `mlflow server` process whose backend store is a fresh PostgreSQL database."""
    db = f"patron_test_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {db}")
    port = _free_port()
    art = tmp_path_factory.mktemp("mlartifacts")
    log = (tmp_path_factory.mktemp("log") / "mlflow.log").open("w")
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--backend-store-uri",
            f"postgresql+psycopg://postgres@127.0.0.1:5432/{db}",
            "--artifacts-destination",
            str(art),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(1)
    else:
        proc.kill()
        pytest.fail("mlflow server did not become healthy: " + Path(log.name).read_text()[-2000:])
    if proc.poll() is not None:
        pytest.fail("mlflow server exited: " + Path(log.name).read_text()[-2000:])
    yield url, db
    proc.terminate()
    proc.wait(timeout=30)
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


def test_production_yaml_points_at_a_tracking_server():
    settings = load_settings(CONFIG_DIR / "production.yaml")
    assert settings.tracking_uri.startswith("http://")
    assert (settings.workspace / "mlflow.db").as_posix() not in settings.tracking_uri


def test_training_and_promotion_land_in_postgres(mlflow_server, tmp_path, monkeypatch):
    from features.ingest.pipeline import ingest_source
    from features.synthetic.generate import generate
    from training.churn.train import train_churn
    from training.mlops.registry import promote

    url, db = mlflow_server
    monkeypatch.setenv("PATRON_HOME", str(tmp_path))
    settings = load_settings(
        CONFIG_DIR / "production.yaml",
        tracking={"uri": url},
        synth={"customers": 400, "items": 120, "days": 540},
        churn={"num_boost_round": 60},
    )
    generate(settings)
    ingest_source(settings, source="synthetic")
    result = train_churn(settings)
    promote(settings, "churn")

    with psycopg.connect(f"{PG}/{db}") as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM registered_models")}
        alias = conn.execute(
            "SELECT version FROM registered_model_aliases WHERE name = %s AND alias = %s",
            (settings.tracking.churn_model, settings.tracking.champion_alias),
        ).fetchone()
        metric = conn.execute(
            "SELECT value FROM metrics WHERE run_uuid = %s AND key = 'roc_auc'", (result.run_id,)
        ).fetchone()
    assert settings.tracking.churn_model in names
    assert alias is not None and int(alias[0]) == int(result.model_version)
    assert metric is not None and 0.5 < metric[0] <= 1.0
