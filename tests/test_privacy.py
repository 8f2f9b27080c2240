"""Privacy: erasure everywhere (tables, caches, batch outputs, online stores, alerts, next training set, both
workers), consent in the API and batch outputs, and no customer id in the server log or the MLflow store."""

from __future__ import annotations

import json
import logging
import shutil
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cloudpickle
import mlflow
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from features.privacy.erasure import erasure_log_path, workspace_files
from features.privacy.pseudonyms import customer_key, log_id, salt_path
from features.tables.store import read_table
from patron.config import load_settings
from serving.online.backend import open_store
from serving.online.redis_store import RedisStore
from serving.online.sqlite_store import SqliteStore
from tests.conftest import SMALL_CONFIG, Server, Workspace, purchases, small_workspace, start_patron_server, stop_server
from tests.test_alerts import complaints, crossing_customer, crossing_tiers, with_tiers
from tests.test_online_store import REDIS_URL

WORKERS = 2


def _event(customer: str, item: str, kind: str, n: int = 0) -> dict:
    return {
        "event_id": f"{customer}-{kind}-{n}",
        "customer_id": customer,
        "item_id": item,
        "ts": f"2026-06-01T10:00:{n:02d}",
        "type": kind,
    }


@pytest.fixture(params=["sqlite", "redis"])
def store(request, tmp_path) -> Iterator:
    s = (
        SqliteStore(tmp_path / "online.db")
        if request.param == "sqlite"
        else RedisStore(REDIS_URL, prefix=f"patron-test-{uuid.uuid4().hex}")
    )
    yield s
    s.clear()
    s.close()


def test_online_store_forgets_a_customer_and_keeps_only_the_hash(store) -> None:
    store.record_events(
        [_event("gone", "I1", "purchase"), _event("gone", "I2", "view", 1), _event("kept", "I1", "purchase")]
    )
    store.record_signals(
        "tickets",
        [{"ticket_id": "gone-t1", "customer_id": "gone", "opened_at": "2026-06-01T10:00:00", "category": "delivery"}],
    )
    store.record_signals("surveys", [{"customer_id": "gone", "ts": "2026-06-01T10:00:00", "nps": 3}])
    assert store.forget(["gone"], ["k-gone"]) == 4
    assert store.recent_events("gone", 10) == [] and store.purchased_items("gone") == []
    assert store.customer_signals("tickets", "gone") == [] and store.customer_signals("surveys", "gone") == []
    assert [e["customer_id"] for _, e in store.event_log()] == ["kept"]
    assert store.signal_log("tickets") == [] and store.signal_log("surveys") == []
    assert store.purchased_items("kept") == ["I1"]
    assert store.erased_keys() == frozenset({"k-gone"}) and store.erased_count() == 1
    assert store.forget(["gone"], ["k-gone"]) == 0 and store.erased_count() == 1


def test_failed_alert_delivery_logs_a_pseudonym_not_the_id(tmp_path, caplog) -> None:
    from serving.answers.alerts import AlertDispatcher

    settings = small_workspace(tmp_path).settings
    settings = settings.model_copy(update={"alerts": settings.alerts.model_copy(update={"max_retries": 0})})

    def refuse(alert):
        raise ConnectionError("CRM down")

    dispatcher = AlertDispatcher(settings, post=refuse)
    before, after = (
        {"risk_tier": "low", "churn_probability": 0.1},
        {"risk_tier": "high", "churn_probability": 0.9, "reasons": []},
    )
    with caplog.at_level(logging.WARNING, logger="bentoml.patron.alerts"):
        assert dispatcher.consider("C-PRIVATE-42", before, after, ["t1"], "1") is not None
        assert dispatcher.drain(10)
    text = caplog.text
    assert "not delivered" in text and log_id(settings, "C-PRIVATE-42") in text and "C-PRIVATE-42" not in text
    assert salt_path(settings).stat().st_mode & 0o077 == 0  # the salt is private to its owner


# --- a 2-worker server over a copy of the trained workspace, with CLV and known offer effects ------------------


@pytest.fixture(scope="module")
def privacy_server(trained_workspace, refusing_customer, tmp_path_factory) -> Iterator[Server]:
    from tests.test_retention_plan import KnownEffects
    from training.mlops import tracking
    from training.value.clv import train_clv

    root = tmp_path_factory.mktemp("privacy")
    shutil.copytree(
        trained_workspace.settings.workspace,
        root / "workspace",
        ignore=shutil.ignore_patterns("bentoml", "online.db*", "rules.yaml", "alerts.jsonl"),
    )
    config = root / "patron.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                **SMALL_CONFIG,
                "workspace": str(root / "workspace"),
                "serving": {**SMALL_CONFIG["serving"], "workers": WORKERS},
                "clv": {"horizon_days": 120, "num_boost_round": 150},
                "bench": {"folds": 3},
                # an unreachable CRM: the failed delivery is logged (with a pseudonym)
                "alerts": {"webhook_url": "http://127.0.0.1:9/crm", "max_retries": 0, "timeout_s": 1},
            }
        )
    )
    with_tiers(config, crossing_tiers(load_settings(config)))
    ws = Workspace(settings=load_settings(config), config=config)
    train_clv(ws.settings)
    tracking.configure(ws.settings)
    cloudpickle.register_pickle_by_value(sys.modules["tests.test_retention_plan"])
    with mlflow.start_run():
        mlflow.pyfunc.log_model(
            name="model", python_model=KnownEffects(), registered_model_name=ws.settings.tracking.uplift_model
        )
    proc, server = start_patron_server(ws, root / "server.log")
    try:
        pids: set[int] = set()
        for _ in range(40):  # /readyz answers once one worker is up: wait for both
            pids |= {b["worker_pid"] for b in _fan_out(server, "/status", {}, 16)}
            if len(pids) == WORKERS:
                break
        assert len(pids) == WORKERS
        yield server
    finally:
        stop_server(proc)


def _post(server: Server, path: str, body: dict) -> dict:
    with server.client(timeout=120) as http:
        r = http.post(path, json=body)
    assert r.status_code == 200, r.text
    return r.json()


def _fan_out(server: Server, path: str, body: dict, n: int = 16) -> list[dict]:
    """n concurrent requests on fresh connections, so that every worker answers some."""
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda _: _post(server, path, body), range(n)))


def _refusals(settings, purpose: str) -> set[str]:
    from features.privacy.consent import consent_refusals

    return set(consent_refusals(settings, purpose))


@pytest.mark.integration
def test_consent_in_the_api_and_in_batch_outputs(privacy_server, refusing_customer) -> None:
    from serving.answers.retention_plan import workspace_plan, write_plan
    from serving.batch.recommend import recommend_batch

    settings = privacy_server.workspace.settings
    no_marketing = _refusals(settings, "marketing")
    assert refusing_customer in no_marketing and refusing_customer in _refusals(settings, "personalization")
    score = _post(privacy_server, "/churn", {"customer_ids": [refusing_customer]})["scores"][0]
    assert score["known"] is True and score["clv"] is not None and score["best_offer"] is None
    assert score["priority"] == "no_marketing_consent"
    plan = _post(privacy_server, "/retention/plan", {"budget": 1000.0})
    assert plan["plan"] and not {r["customer_id"] for r in plan["plan"]} & no_marketing
    assert plan["totals"]["skipped_no_consent"] > 0
    rec = _post(privacy_server, "/recommend", {"customer_id": refusing_customer})
    assert rec["fallback"] is True and "no_personalisation_consent" in rec["rules_applied"]

    recs = recommend_batch(settings, settings.outputs_dir / "recommendations.csv", k=5, workers=1, progress=False)
    rows = pd.read_csv(recs.path, dtype={"customer_id": str})
    mine = rows[rows["customer_id"] == refusing_customer]
    assert len(mine) and (mine["source"] == "popular").all() and not mine["personalisation_consent"].any()
    assert (rows.loc[rows["customer_id"] != refusing_customer, "source"] == "personal").any()
    path = write_plan(workspace_plan(settings, 1000.0), settings.outputs_dir / "retention_plan.csv")
    planned = pd.read_csv(path, dtype={"customer_id": str})
    assert len(planned) and not set(planned["customer_id"]) & no_marketing


def _holders(settings, ids: set[str]) -> dict[str, int]:
    """Workspace files (outside privacy.keep_dirs) holding rows of `ids`."""
    out = {}
    for path in workspace_files(settings):
        frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, dtype=str)
        if "customer_id" in frame and (n := int(frame["customer_id"].astype(str).isin(ids).sum())):
            out[str(path.relative_to(settings.workspace))] = n
    return out


@pytest.mark.integration
def test_erasure_reaches_every_place_and_both_workers(privacy_server, refusing_customer) -> None:
    from features.ingest.pipeline import ingest_source
    from features.pit.build import build_features, data_end, interactions, training_set
    from features.pit.cutoffs import cutoff_plan
    from serving.batch.churn import score_churn

    settings = privacy_server.workspace.settings
    alerted = crossing_customer(settings)  # two delivery complaints raise an alert for this one
    personal = next(
        c
        for c in purchases(settings)["customer_id"].value_counts().index
        if c not in (alerted, refusing_customer)
        and not _post(privacy_server, "/recommend", {"customer_id": c})["fallback"]
    )
    victims = {alerted, personal}
    item = read_table(settings.tables_dir, "products")["item_id"].iloc[0]
    assert _post(privacy_server, "/events", {"tickets": complaints(alerted, data_end(settings))})["alerts"] == 1
    _post(
        privacy_server, "/events", {"events": [_event(personal, item, "purchase"), _event("bystander", item, "view")]}
    )
    build_features(settings)
    score_churn(settings, progress=False)  # WORKSPACE/outputs/churn_scores.parquet
    assert {"tables/customers.parquet", "tables/events.parquet", "outputs/recommendations.csv"} <= set(
        _holders(settings, victims)
    )
    assert "outputs/churn_scores.parquet" in {str(p.relative_to(settings.workspace)) for p in workspace_files(settings)}

    report = _post(privacy_server, "/admin/erase", {"customer_ids": sorted(victims)})
    assert report["customers"] == report["newly_erased"] == 2 and report["alerts_removed"] == 1
    assert report["online_rows_removed"] == 3 and report["workspace_rows_removed"] > 0
    assert not any(v in json.dumps(report) for v in victims)  # no id echoed back

    # the API, on both workers at once: an unknown customer's answers
    for body in _fan_out(privacy_server, "/recommend", {"customer_id": personal, "k": 5}):
        assert body["fallback"] is True and body["source"] == "popular" and body["customer_id"] == personal
    for body in _fan_out(privacy_server, "/churn", {"customer_ids": sorted(victims)}):
        assert all(
            s["known"] is False and s["segment"] is None and s["clv"] is None and s["best_offer"] is None
            for s in body["scores"]
        )
    plan = _post(privacy_server, "/retention/plan", {"budget": 100000.0})
    assert not {r["customer_id"] for r in plan["plan"]} & victims
    assert _post(privacy_server, "/events", {"events": [_event(personal, item, "view", 9)]})["accepted"] == 0
    with privacy_server.client(timeout=30) as http:
        assert not any(a["customer_id"] in victims for a in http.get("/alerts").json()["alerts"])

    # the workspace: tables, quarantine, feature caches, batch outputs; the erasure log holds hashes and dates only
    assert _holders(settings, victims) == {}
    log = erasure_log_path(settings).read_text()
    assert not any(v in log for v in victims)
    assert {json.loads(line)["key"] for line in log.splitlines()} == {customer_key(settings, v) for v in victims}
    assert all(set(json.loads(line)) == {"key", "date"} for line in log.splitlines())
    # the online store (SQLite here; the Redis store is checked through `patron forget` below)
    online = open_store(settings)
    try:
        assert online.recent_events(personal, 10) == [] and online.purchased_items(personal) == []
        assert online.customer_signals("tickets", alerted) == []
        assert {e["customer_id"] for _, e in online.event_log()} == {"bystander"}
    finally:
        online.close()

    # the next training set: re-ingesting the original source brings nobody back
    ingest_source(settings, "synthetic")
    assert _holders(settings, victims) == {}
    plan_ = cutoff_plan(settings)
    rows = training_set(settings, plan_.train)
    assert len(rows) and not set(rows["customer_id"]) & victims
    assert not set(interactions(settings, data_end(settings))["customer_id"]) & victims


@pytest.mark.integration
def test_patron_forget_cleans_the_redis_store_and_the_tables(ingested_workspace, tmp_path) -> None:
    from patron.cli.main import app

    root = tmp_path / "forget"
    shutil.copytree(ingested_workspace.settings.tables_dir, root / "workspace" / "tables")
    config = root / "patron.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                **SMALL_CONFIG,
                "workspace": str(root / "workspace"),
                "online": {"backend": "redis", "redis_prefix": f"patron-test-{uuid.uuid4().hex}"},
            }
        )
    )
    settings = load_settings(config)
    victim = read_table(settings.tables_dir, "customers")["customer_id"].iloc[0]
    store = open_store(settings)
    try:
        store.record_events([_event(victim, "I00001", "purchase"), _event("other", "I00001", "view")])
        result = CliRunner().invoke(app, ["--config", str(config), "forget", victim])
        assert result.exit_code == 0, result.output
        assert "erased 1 customers (1 new)" in result.output and victim not in result.output
        assert store.recent_events(victim, 10) == [] and store.purchased_items(victim) == []
        assert [e["customer_id"] for _, e in store.event_log()] == ["other"]
        assert store.erased_keys() == {customer_key(settings, victim)}
        assert _holders(settings, {victim}) == {}
    finally:
        store.clear()
        store.close()


# --- no customer id in the server log or the MLflow store ------------------------------------------------------


def _files_holding(paths: list[Path], ids: set[str]) -> dict[str, list[str]]:
    hits = {}
    for path in paths:
        text = path.read_bytes().decode("latin-1")
        if found := sorted(i for i in ids if i in text):
            hits[str(path)] = found[:3]
    return hits


@pytest.mark.integration
def test_no_customer_id_in_the_server_log_or_the_mlflow_store(privacy_server, trained_workspace) -> None:
    settings = privacy_server.workspace.settings
    # every real customer id, from the original source (the workspace copy has erased some)
    ids = set(read_table(trained_workspace.settings.tables_dir, "customers")["customer_id"].astype(str))
    # the run so far: training (churn, recommender, CLV, uplift), serving, events, tickets, alerts, erasure
    assert "not delivered" in privacy_server.log.read_text()  # a failed alert delivery was logged
    assert _files_holding([privacy_server.log], ids) == {}
    stores = {trained_workspace.settings.workspace, settings.workspace}
    mlflow_files = [ws / "mlflow.db" for ws in stores] + [
        p for ws in stores for p in (ws / "mlartifacts").rglob("*") if p.is_file()
    ]
    # The one exception, by name: the recommender model's own customer index (a per-customer model maps each
    # customer to its factors); it is a model, not logged rows, and leaves with the next training after an erasure.
    index = [p for p in mlflow_files if p.name == "ids.json" and p.parent.name == "recommender"]
    assert index and all(json.loads(p.read_text()).keys() == {"customer_ids", "item_ids"} for p in index)
    hits = _files_holding([p for p in mlflow_files if p not in index], ids)
    assert hits == {}, hits
