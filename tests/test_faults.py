"""Fault injection: each fault loses nothing acknowledged, and the service keeps answering or fails cleanly."""

from __future__ import annotations

import hashlib
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import mlflow
import pytest
import redis
import yaml
from mlflow import MlflowClient

from features.tables.store import read_table
from patron.config import load_settings
from serving.online.backend import open_store
from tests.conftest import SMALL_CONFIG, Server, Workspace, free_port, start_patron_server, stop_server

pytestmark = pytest.mark.integration
WORKERS = 2
CLIENT_TIMEOUT_S = 10  # a request past this counts as hung
LOAD_THREADS = 4
RECOVERY_S = 90  # a killed worker must be back within this
PATRON = str(Path(sys.executable).parent / "patron")  # the installed command line


def copy_workspace(source: Workspace, root: Path, online: dict, workers: int = 1) -> Workspace:
    """A copy of a trained workspace (own registry and online store) with its own config."""
    shutil.copytree(
        source.settings.workspace,
        root / "workspace",
        ignore=shutil.ignore_patterns("bentoml", "online.db*", "rules.yaml", "serving"),
    )
    config = root / "patron.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                **SMALL_CONFIG,
                "workspace": str(root / "workspace"),
                "serving": {**SMALL_CONFIG["serving"], "workers": workers},
                "online": {"rules_path": str(root / "rules.yaml"), "reload_poll_s": 1, **online},
            }
        )
    )
    return Workspace(settings=load_settings(config), config=config)


def worker_pids(server: Server, n: int = 24) -> set[int]:
    """Pids of the ready workers seen answering /status over n requests on fresh connections."""
    pids = set()
    for _ in range(n):
        with server.client(timeout=CLIENT_TIMEOUT_S) as http:
            try:
                r = http.post("/status", json={})
            except httpx.TransportError:
                continue
            if r.status_code == 200 and r.json()["ready"]:
                pids.add(r.json()["worker_pid"])
    return pids


def wait_for_workers(
    server: Server, count: int, without: set[int] = frozenset(), timeout_s: float = RECOVERY_S
) -> set[int]:
    """Poll until `count` distinct ready workers (none of `without`) answer; returns their pids."""
    deadline, seen = time.monotonic() + timeout_s, set()
    while time.monotonic() < deadline:
        seen |= worker_pids(server) - set(without)
        if len(seen) >= count:
            return seen
        time.sleep(0.5)
    raise AssertionError(f"only workers {seen} answered within {timeout_s}s")


def in_stock_items(ws: Workspace) -> list[str]:
    p = read_table(ws.settings.tables_dir, "products")
    return p.loc[p["in_stock"].astype(bool), "item_id"].tolist()


def view(event_id: str, customer: str, item: str) -> dict:
    return {"event_id": event_id, "customer_id": customer, "item_id": item, "ts": "2026-06-01T10:00:00", "type": "view"}


def logged_event_ids(ws: Workspace) -> list[str]:
    store = open_store(ws.settings)
    try:
        return [e["event_id"] for _, e in store.event_log()]
    finally:
        store.close()


@pytest.fixture(scope="module")
def fault_server(trained_workspace, tmp_path_factory) -> Iterator[Server]:
    """A 2-worker server (SQLite online store) on a copy of the trained workspace."""
    root = tmp_path_factory.mktemp("faults")
    ws = copy_workspace(trained_workspace, root, {"backend": "sqlite"}, workers=WORKERS)
    proc, server = start_patron_server(ws, root / "server.log")
    wait_for_workers(server, WORKERS)
    yield server
    stop_server(proc)


class Load:
    """Threads posting unique events (retried until acknowledged, as a client would) and recommendations."""

    def __init__(self, server: Server, items: list[str]) -> None:
        self.server, self.items = server, items
        self.acked: set[str] = set()
        self.outcomes: Counter = Counter()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._events, args=(n,)) for n in range(LOAD_THREADS // 2)]
        self._threads += [threading.Thread(target=self._recommend, args=(n,)) for n in range(LOAD_THREADS // 2)]

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()

    def _post(self, http: httpx.Client, path: str, body: dict) -> httpx.Response | None:
        try:
            r = http.post(path, json=body)
        except httpx.TimeoutException:
            self.outcomes[f"{path} timeout"] += 1
            return None
        except httpx.TransportError as exc:  # the connection went down with the worker
            self.outcomes[f"{path} {type(exc).__name__}"] += 1
            return None
        self.outcomes[f"{path} {r.status_code}"] += 1
        return r

    def _events(self, n: int) -> None:
        i = 0
        while not self._stop.is_set():
            event_id = f"fault-kill-{n}-{i}"
            body = {"events": [view(event_id, f"fault-kill-{n}", self.items[i % len(self.items)])]}
            for _ in range(20):  # same event id on every retry: the store counts it once
                with self.server.client(timeout=CLIENT_TIMEOUT_S) as http:
                    r = self._post(http, "/events", body)
                if r is not None and r.status_code == 200:
                    assert r.json()["accepted"] + r.json()["duplicates"] == 1
                    self.acked.add(event_id)
                    break
                time.sleep(0.1)
            i += 1

    def _recommend(self, n: int) -> None:
        with self.server.client(timeout=CLIENT_TIMEOUT_S) as http:
            while not self._stop.is_set():
                if self._post(http, "/recommend", {"customer_id": f"fault-kill-{n}", "k": 5}) is None:
                    http.close()
                    http = self.server.client(timeout=CLIENT_TIMEOUT_S)


def test_a_worker_killed_under_load_loses_no_acknowledged_event(fault_server):
    before = wait_for_workers(fault_server, WORKERS)
    victim = min(before)
    with Load(fault_server, in_stock_items(fault_server.workspace)) as load:
        time.sleep(2)
        acked_before_kill = set(load.acked)
        os.kill(victim, signal.SIGKILL)
        time.sleep(4)
    assert len(acked_before_kill) > 10 and len(load.acked) > len(acked_before_kill)
    assert not [k for k in load.outcomes if k.endswith("timeout")], load.outcomes
    failures = {k: v for k, v in load.outcomes.items() if not k.endswith(" 200")}
    # A request on the killed worker fails as a dropped connection or a 5xx, never a wrong answer.
    assert all(
        k.split()[1] in {"500", "502", "503", "RemoteProtocolError", "ReadError", "ConnectError", "WriteError"}
        for k in failures
    ), load.outcomes
    logged = logged_event_ids(fault_server.workspace)
    assert load.acked <= set(logged) and len(logged) == len(set(logged))  # all there, each once
    # The supervisor starts a new worker in place of the killed one.
    after = wait_for_workers(fault_server, WORKERS, without={victim})
    assert victim not in after
    with fault_server.client(timeout=CLIENT_TIMEOUT_S) as http:
        assert http.post("/recommend", json={"customer_id": "fault-kill-0", "k": 5}).status_code == 200


@pytest.fixture
def private_redis(tmp_path) -> Iterator[RedisProcess]:
    """A Redis of this test's own (never the shared one), fsyncing every write to its append-only file."""
    server = RedisProcess(free_port(), tmp_path / "redis")
    server.start()
    yield server
    server.kill()


class RedisProcess:
    """A redis-server child process that can be killed and started again on the same data folder."""

    def __init__(self, port: int, folder: Path) -> None:
        self.port, self.folder = port, folder
        self.url = f"redis://127.0.0.1:{port}/0"
        self.proc: subprocess.Popen | None = None
        folder.mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--dir",
                str(self.folder),
                "--daemonize",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if client.ping():
                    return
            except redis.ConnectionError:
                time.sleep(0.1)
        raise AssertionError("private redis-server did not start")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # SIGKILL: no chance to save anything on the way out
            self.proc.wait()


def test_a_restarted_online_store_keeps_acknowledged_events_and_the_service_reconnects(
    trained_workspace, private_redis, tmp_path
):
    ws = copy_workspace(
        trained_workspace,
        tmp_path,
        {
            "backend": "redis",
            "redis_url": private_redis.url,
            "redis_prefix": f"fault-{uuid.uuid4().hex}",
            "redis_require_fsync": True,
        },
    )
    proc, server = start_patron_server(ws, tmp_path / "server.log")
    items = in_stock_items(ws)
    try:
        with server.client(timeout=CLIENT_TIMEOUT_S) as http:
            acked = []
            for n in range(20):
                r = http.post("/events", json={"events": [view(f"fault-redis-{n}", "fault-redis", items[n])]})
                assert r.status_code == 200 and r.json()["accepted"] == 1
                acked.append(f"fault-redis-{n}")
            private_redis.kill()
            started = time.monotonic()
            down = http.post("/events", json={"events": [view("fault-redis-down", "fault-redis", items[0])]})
            assert down.status_code == 503  # BentoML hides a 5xx's message; the server log names the cause
            assert time.monotonic() - started < CLIENT_TIMEOUT_S
            during = http.post("/recommend", json={"customer_id": "fault-redis", "k": 5})
            assert during.status_code in (200, 503), during.text
            private_redis.start()
            deadline = time.monotonic() + 30
            while True:  # the service reconnects by itself, no restart
                again = http.post("/events", json={"events": [view("fault-redis-after", "fault-redis", items[0])]})
                if again.status_code == 200 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert again.status_code == 200 and again.json()["accepted"] == 1
            assert http.post("/recommend", json={"customer_id": "fault-redis", "k": 5}).status_code == 200
        logged = logged_event_ids(ws)
        assert set(acked) <= set(logged) and "fault-redis-down" not in logged and "fault-redis-after" in logged
    finally:
        stop_server(proc)
    # A Redis that would drop acknowledged writes on a restart is refused when the config requires fsync.
    redis.Redis.from_url(private_redis.url).config_set("appendonly", "no")
    from serving.online.redis_store import RedisStore

    with pytest.raises(RuntimeError, match="appendonly"):
        RedisStore(private_redis.url, require_fsync=True)


def test_an_unreachable_registry_at_startup_serves_the_last_good_local_copy(trained_workspace, tmp_path):
    from serving.champions.load import load_champions
    from serving.champions.local_copy import copies_dir

    ws = copy_workspace(trained_workspace, tmp_path, {"backend": "sqlite"})
    good = load_champions(ws.settings)  # a start with the registry up keeps the local copies
    assert good.churn_source == "registry"
    assert (copies_dir(ws.settings) / "churn" / good.churn_version / "model" / "MLmodel").exists()
    db = Path(ws.settings.tracking_uri.removeprefix("sqlite:///"))
    db.write_bytes(os.urandom(4096))  # the registry database is unreadable now
    proc, server = start_patron_server(ws, tmp_path / "server.log")
    try:
        with server.client(timeout=CLIENT_TIMEOUT_S) as http:
            status = http.post("/status", json={}).json()
            sources = {m["model"]: m for m in status["models"]}
            assert status["ready"] is True
            for model, version in (("recommender", good.recommender_version), ("churn", good.churn_version)):
                assert sources[model]["serving_version"] == version
                assert sources[model]["source"].startswith("local copy saved ")
                assert "registry unreachable: DatabaseError" in sources[model]["source"]
            rec = http.post("/recommend", json={"customer_id": "nobody", "k": 3}).json()
            assert rec["model_version"] == good.recommender_version and len(rec["items"]) == 3
            assert http.post("/churn", json={"customer_ids": ["nobody"]}).json()["model_version"] == good.churn_version
        assert "registry unreachable, serving the last good local copies" in server.log.read_text()
    finally:
        stop_server(proc)


def test_a_corrupt_artifact_at_reload_leaves_the_old_champion_serving(fault_server, tmp_path):
    s = fault_server.workspace.settings
    client = MlflowClient(tracking_uri=s.tracking_uri, registry_uri=s.tracking_uri)
    mlflow.set_tracking_uri(s.tracking_uri)
    name, alias = s.tracking.recommender_model, s.tracking.champion_alias
    old = client.get_model_version_by_alias(name, alias)
    old_version = str(old.version)
    corrupt = Path(
        mlflow.artifacts.download_artifacts(
            client.get_model_version_download_uri(name, old.version), dst_path=str(tmp_path / "corrupt")
        )
    )
    factors = corrupt / "artifacts" / "recommender" / "factors.npz"
    factors.write_bytes(factors.read_bytes()[: factors.stat().st_size // 2])  # truncated in the artifact store
    broken = client.create_model_version(name, str(corrupt), old.run_id)
    client.set_registered_model_alias(name, alias, broken.version)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with fault_server.client(timeout=CLIENT_TIMEOUT_S) as http:
                statuses = [http.post("/status", json={}).json()["models"][0] for _ in range(8)]
            if all(st["registry_version"] == str(broken.version) and st["last_error"] for st in statuses):
                break
            time.sleep(0.5)
        assert all(
            st["serving_version"] == old_version and st["registry_version"] == str(broken.version) and st["last_error"]
            for st in statuses
        ), statuses
        with fault_server.client(timeout=CLIENT_TIMEOUT_S) as http:
            for _ in range(8):
                r = http.post("/recommend", json={"customer_id": "nobody", "k": 3})
                assert r.status_code == 200 and r.json()["model_version"] == old_version
    finally:
        client.set_registered_model_alias(name, alias, old.version)
    assert "recommender reload failed" in fault_server.log.read_text()


def test_a_training_run_killed_midway_registers_nothing_and_the_champion_serves(fault_server):
    from training.mlops.registry import PromotionRefused, promote
    from training.mlops.tracking import FAULT_PAUSE_ENV

    ws = fault_server.workspace
    s = ws.settings
    client = MlflowClient(tracking_uri=s.tracking_uri, registry_uri=s.tracking_uri)
    name = s.tracking.churn_model
    versions_before = {v.version for v in client.search_model_versions(f"name='{name}'")}
    champion = str(client.get_model_version_by_alias(name, s.tracking.champion_alias).version)
    env = {**os.environ, FAULT_PAUSE_ENV: "model_logged", "PATRON_CONFIG": str(ws.config)}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.Popen(
        [PATRON, "train", "churn"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        for line in proc.stderr:  # the model (booster and calibrator) is logged, not registered
            if f"{FAULT_PAUSE_ENV}: paused at model_logged" in line:
                break
        assert proc.poll() is None, "training ended before reaching the pause point"
        runs = client.search_runs(
            [client.get_experiment_by_name(s.tracking.experiment).experiment_id],
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        assert runs[0].info.status == "RUNNING"
    finally:
        proc.kill()
        proc.wait()
    assert {v.version for v in client.search_model_versions(f"name='{name}'")} == versions_before
    assert str(client.get_model_version_by_alias(name, s.tracking.champion_alias).version) == champion
    with fault_server.client(timeout=CLIENT_TIMEOUT_S) as http:
        r = http.post("/churn", json={"customer_ids": ["nobody"]})
        assert r.status_code == 200 and r.json()["model_version"] == champion
    # A version left half-registered (no evaluation tags, e.g. by an older Patron) is refused, even forced.
    half = client.create_model_version(name, runs[0].info.artifact_uri + "/model", runs[0].info.run_id)
    with pytest.raises(PromotionRefused, match="cannot be promoted: it lacks the evaluation tags"):
        promote(s, "churn", version=int(half.version), force=True)
    client.delete_model_version(name, half.version)
    assert str(client.get_model_version_by_alias(name, s.tracking.champion_alias).version) == champion


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_a_full_disk_while_ingesting_fails_cleanly_and_keeps_the_tables(ingested_workspace, tmp_path):
    source = ingested_workspace.settings.workspace
    config = tmp_path / "patron.yaml"
    config.write_text(yaml.safe_dump({**SMALL_CONFIG, "workspace": str(tmp_path / "workspace")}))
    for folder in ("tables", "raw"):
        shutil.copytree(source / folder, tmp_path / "workspace" / folder)
    tables = load_settings(config).tables_dir
    before = _digests(tables)
    limit = max(p.stat().st_size for p in tables.iterdir()) // 2  # the largest table no longer fits

    def full_disk() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, like ENOSPC
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    env = {**os.environ, "PATRON_CONFIG": str(config)}
    done = subprocess.run(
        [PATRON, "data", "ingest", "--source", "synthetic"],
        env=env,
        capture_output=True,
        text=True,
        preexec_fn=full_disk,
        timeout=300,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("ingest failed: could not write the workspace tables")
    assert "File too large" in done.stderr and "workspace tables left unchanged" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert _digests(tables) == before  # no table replaced, no temporary file left behind
    assert all(len(read_table(tables, p.stem)) > 0 for p in tables.iterdir())


def test_a_churn_champion_that_cannot_score_the_features_keeps_the_service_not_ready(trained_workspace, tmp_path):
    import lightgbm as lgb
    import numpy as np
    import pandas as pd

    from serving.champions.load import load_churn_champion
    from training.churn.model import ChurnModel

    ws = copy_workspace(trained_workspace, tmp_path, {"backend": "sqlite"})
    s = ws.settings
    good, _ = load_churn_champion(s)
    names = [*good.feature_name(), "not_a_feature"]  # e.g. trained on features this code no longer builds
    rng = np.random.default_rng(0)
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "num_threads": 1},
        lgb.Dataset(rng.random((200, len(names))), rng.integers(0, 2, 200), feature_name=names),
        num_boost_round=2,
    )
    mlflow.set_tracking_uri(s.tracking_uri)
    with mlflow.start_run() as run:
        model_uri = ChurnModel(booster).log(pd.DataFrame(rng.random((2, len(names))), columns=names))
    client = MlflowClient(tracking_uri=s.tracking_uri, registry_uri=s.tracking_uri)
    bad = client.create_model_version(s.tracking.churn_model, model_uri, run.info.run_id)
    client.set_registered_model_alias(s.tracking.churn_model, s.tracking.champion_alias, bad.version)
    proc, server = start_patron_server(ws, tmp_path / "server.log", wait_ready=False)
    try:
        deadline = time.monotonic() + 120
        while "not ready" not in server.log.read_text() and time.monotonic() < deadline:
            time.sleep(0.5)
        with server.client(timeout=CLIENT_TIMEOUT_S) as http:
            assert http.get("/readyz").status_code == 503
            r = http.post("/recommend", json={"customer_id": "nobody", "k": 3})
            assert r.status_code == 503, r.text
        log = server.log.read_text()
        assert "not ready: KeyError" in log and "not_a_feature" in log
    finally:
        stop_server(proc)
