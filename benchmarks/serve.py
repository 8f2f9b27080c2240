"""`patron bench serve`: the real service under open-loop load at fixed rates, beside BentoML's constant floor."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
import yaml

from benchmarks.report import BenchReport, events_fingerprint, package_versions
from features.tables.store import read_table
from patron.config import DEFAULT_CONFIG, REPO_ROOT, Settings
from serving.access.api_keys import SCOPES, create_key
from serving.server import bentoml_overrides, server_command, server_env, stop_server

# The floors (constant endpoints): the same bar as /recommend.
TARGET_P99_MS = {"recommend": 15.0, "churn": 15.0, "events": 10.0, "floor": 15.0, "floor_fastapi": 15.0}
FASTAPI_FLOOR = "benchmarks.floor_service:fastapi_floor"
PACKAGES = ("patron", "bentoml", "fastapi", "uvicorn", "httpx", "numpy")


@dataclass
class Point:
    """One endpoint at one offered rate."""

    endpoint: str
    rate: float
    p50: float
    p95: float
    p99: float
    errors: int
    sent: int
    achieved: float

    def row(self) -> str:
        return (
            f"| {self.endpoint} | {self.rate:.0f} | {self.achieved:.0f} | {self.p50:.1f} | {self.p95:.1f} | "
            f"{self.p99:.1f} | {self.errors} |"
        )


def _start(
    settings: Settings,
    config: Path,
    target: str,
    port: int,
    log: Path,
    keys_file: Path,
    workers: int,
    bench_options: bool = True,
) -> subprocess.Popen:
    """The server under test; `bench_options` turns BentoML's metrics and access log off (False: as configured)."""
    if target == FASTAPI_FLOOR:  # plain uvicorn, same worker count, no access log
        cmd = [sys.executable, "-m", "benchmarks.floor_service", settings.serving.host, str(port), str(workers)]
    else:
        cmd = [target if c == "serving.service:Patron" else c for c in server_command(settings, port)]
    # The launcher hands the service its worker count (BentoML's config), whatever the config file says.
    env = server_env(
        settings.model_copy(update={"serving": settings.serving.model_copy(update={"workers": workers})}), config
    )
    if bench_options:
        env["BENTOML_CONFIG_OPTIONS"] = bentoml_overrides(
            ["patron", "floor"], **{"metrics.enabled": False, "logging.access.enabled": False}
        )
    env["PATRON_API_KEYS_FILE"] = str(keys_file)  # the bench's own key, not the workspace's
    return subprocess.Popen(cmd, env=env, cwd=REPO_ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT)


def _wait(url: str, proc: subprocess.Popen, probe: str, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(url + probe, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"server at {url} not ready (exit code {proc.poll()})")


def _rss_mb(proc: subprocess.Popen) -> list[float]:
    """Resident memory of each process in the server's tree (the workers are the large ones)."""
    tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    return sorted((p.memory_info().rss / 2**20 for p in tree if p.is_running()), reverse=True)


def _load(url: str, bodies: list[dict], rate: float, seconds: float, folder: Path, name: str, key: str) -> dict:
    path = folder / f"{name}-bodies.json"
    path.write_text(json.dumps(bodies))
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.loadgen", url, str(path), str(rate), str(seconds)],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO_ROOT,
        env={**os.environ, "PATRON_API_KEY": key},
    )
    return json.loads(out.stdout)


def _settle(url: str, timeout_s: float = 60.0) -> None:
    """Wait until the server has drained the previous point's backlog (/livez answers quickly), so points don't mix."""
    deadline = time.monotonic() + timeout_s
    # One client for all probes: creating one (its TLS context) takes ~40 ms, more than the threshold itself.
    with httpx.Client(timeout=5) as client:
        while time.monotonic() < deadline:
            started = time.perf_counter()
            with contextlib.suppress(httpx.HTTPError):
                client.get(url + "/livez")
            if time.perf_counter() - started < 0.02:
                return
            time.sleep(1)


def _point(endpoint: str, rate: float, result: dict) -> Point:
    lat = np.array(result["latencies_ms"])
    p50, p95, p99 = np.percentile(lat, [50, 95, 99])
    return Point(endpoint, rate, p50, p95, p99, result["errors"], result["sent"], result["sent"] / result["elapsed_s"])


def _bodies(settings: Settings, n: int, seed: int) -> dict[str, Any]:
    """Request mixes: /recommend (known, new-with-events, unknown; a third with context), /churn, /events of 10."""
    rng = np.random.default_rng(seed)
    customers = read_table(settings.tables_dir, "events", columns=["customer_id"])["customer_id"].drop_duplicates()
    products = read_table(settings.tables_dir, "products")
    known = customers.sample(200, random_state=seed, replace=True).tolist()
    # /churn: distinct customers, so most requests ask for a customer the worker has not explained yet (worst case)
    asked = customers.sample(min(n, len(customers)), random_state=seed + 1).tolist()
    items = products.loc[products["in_stock"].astype(bool), "item_id"].tolist()
    run = uuid.uuid4().hex[:8]
    # New customers are new to every run: an earlier run's events (the workspace keeps them) would make them heavy.
    fresh = [f"bench-new-{run}-{i}" for i in range(50)]
    recommend = []
    for i in range(500):
        kind = i % 3
        customer = known[i % len(known)] if kind == 0 else fresh[i % len(fresh)] if kind == 1 else f"anon-{i}"
        body = {"customer_id": customer, "k": 10}
        if i % 3 == 0 or i % 5 == 0:
            body["context_item_ids"] = [items[int(rng.integers(len(items)))]]
        recommend.append(body)
    ev = [
        {
            "events": [
                {
                    "event_id": f"bench-{run}-{i}-{j}",
                    "customer_id": fresh[(i + j) % len(fresh)],
                    "item_id": items[int(rng.integers(len(items)))],
                    "ts": "2026-06-01T12:00:00",
                    "type": ["view", "cart", "purchase"][j % 3],
                }
                for j in range(10)
            ]
        }
        for i in range(n)
    ]
    return {
        "retailer": {"customers_with_events": len(customers), "items": len(products)},
        "recommend": recommend,
        "churn": [{"customer_ids": [c]} for c in asked],
        "events": ev,
        "seed_events": [
            {
                "events": [
                    {
                        "event_id": f"bench-{run}-seed-{c}-{j}",
                        "customer_id": c,
                        "item_id": items[(k * 7 + j) % len(items)],
                        "ts": "2026-06-01T11:00:00",
                        "type": "view",
                    }
                    for j in range(5)
                ]
            }
            for k, c in enumerate(fresh)
        ],
    }


def run_serve_bench(
    settings: Settings,
    config: Path | None,
    rates: list[float],
    seconds: float,
    workers: int,
    echo: Callable[[str], None] = print,
    port: int = 3917,
    ready_timeout_s: float = 900,
) -> BenchReport:
    """Measure the floors (BentoML, FastAPI), then /recommend, /churn and POST /events at each rate; returns the
    report, written to WORKSPACE/outputs/bench_serve/serve_bench.md/.json and logged as an MLflow run."""
    bench_started = time.monotonic()
    out = settings.outputs_dir / "bench_serve"
    out.mkdir(parents=True, exist_ok=True)
    cfg = out / "config.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "extends": str(Path(config or DEFAULT_CONFIG).resolve()),
                "workspace": str(settings.workspace),
                "serving": {"workers": workers},
            }
        )
    )
    url = f"http://127.0.0.1:{port}"
    keys_file = out / "api_keys.json"  # an all-scope key fast enough never to throttle the offered rates
    key = create_key(keys_file, "bench", list(SCOPES), rate_per_s=10 * max(rates), replace=True)
    headers = {"Authorization": f"Bearer {key}"}
    bodies = _bodies(settings, int(max(rates) * seconds) + 1, settings.seed)
    points: list[Point] = []
    report: dict = {"workers": workers, "seconds_per_point": seconds, "rates": rates, "retailer": bodies["retailer"]}
    for target, endpoints in (
        ("benchmarks.floor_service:Floor", {"floor": "/ping"}),
        (FASTAPI_FLOOR, {"floor_fastapi": "/ping"}),
        ("serving.service:Patron", {"recommend": "/recommend", "churn": "/churn", "events": "/events"}),
    ):
        label = target.split(":")[1].lower()
        started = time.monotonic()
        proc = _start(settings, cfg, target, port, out / f"{label}.log", keys_file, workers)
        try:
            _wait(url, proc, "/readyz", ready_timeout_s)
            report[f"startup_s_{label}"] = round(time.monotonic() - started, 1)
            if "events" in endpoints:
                for body in bodies["seed_events"]:  # the new customers have a live history before the load
                    httpx.post(url + "/events", json=body, headers=headers, timeout=30).raise_for_status()
            for name, path in endpoints.items():
                with httpx.Client(base_url=url, headers=headers, timeout=30) as client:  # warm-up: first calls are slow
                    # (POST /events was warmed by the seed events: its own bodies must stay new.)
                    for body in [] if name == "events" else bodies.get(name, [{}])[:40]:
                        client.post(path, json=body)
                for rate in rates:
                    p = _point(name, rate, _load(url + path, bodies.get(name, [{}]), rate, seconds, out, name, key))
                    points.append(p)
                    echo(p.row())
                    _settle(url)
            report[f"rss_mb_{label}"] = [round(x) for x in _rss_mb(proc)]
        finally:
            stop_server(proc)
    held = {}
    for name in TARGET_P99_MS:
        ok = [
            p.rate
            for p in points
            if p.endpoint == name and p.errors == 0 and p.p99 <= TARGET_P99_MS[name] and p.achieved >= 0.95 * p.rate
        ]
        held[name] = max(ok, default=0.0)
    # The bar: a sustained rate at least 60% of the BentoML floor's.
    share = {k: (round(v / held["floor"], 2) if held["floor"] else None) for k, v in held.items()}
    bench = BenchReport(
        name="Serving benchmark",
        dataset=str(settings.workspace),
        protocol={"workers": workers, "seconds_per_point": seconds, "rates": ",".join(f"{r:g}" for r in rates)},
        columns=["endpoint", "rate", "achieved", "p50", "p95", "p99", "errors", "sent"],
        label="point",
        rows=[{"point": f"{p.endpoint} {p.rate:g}/s", **p.__dict__} for p in points],
        fingerprint=events_fingerprint(settings),
        seeds={"bodies": settings.seed},
        seconds=time.monotonic() - bench_started,
        summary={
            **{f"highest_rate_held_{k}": v for k, v in held.items()},
            **{f"share_of_floor_{k}": v for k, v in share.items() if v is not None},
            **{k: v for k, v in report.items() if k.startswith("startup_s_")},
        },
        details={**report, "highest_rate_held": held, "share_of_floor": share},
        notes=[
            "latencies in ms; achieved: requests sent per second",
            *(
                f"{k}: highest rate held with p99 <= {TARGET_P99_MS[k]:.0f} ms and no error: {v:.0f}/s "
                f"({share[k]} of the BentoML floor's)"
                for k, v in held.items()
            ),
        ],
        versions=package_versions(PACKAGES),
    )
    bench.write(out, "serve_bench", settings)
    return bench
