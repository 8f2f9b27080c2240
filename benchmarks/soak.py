"""`patron bench soak`: the real service under steady mixed open-loop traffic for minutes; errors, latency per
interval and the resident memory of every server process over time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import yaml

from benchmarks.report import BenchReport, events_fingerprint, package_versions
from benchmarks.serve import _bodies, _rss_mb, _start, _wait
from patron.config import DEFAULT_CONFIG, REPO_ROOT, Settings
from serving.access.api_keys import SCOPES, create_key
from serving.server import stop_server

PACKAGES = ("patron", "bentoml", "httpx", "numpy", "psutil")
PATHS = {"recommend": "/recommend", "churn": "/churn", "events": "/events"}
WARMUP_CALLS = 40  # per endpoint before the clock starts: a worker's first calls load lazily


@contextmanager
def scratch_service(
    settings: Settings, config: Path | None, workers: int, port: int, out: Path, rate: float
) -> Iterator[tuple[subprocess.Popen, str, str]]:
    """The real service over the workspace with its own all-scope key (never throttled at `rate`), and a scratch
    online store and alerts log so the workspace's live data is left alone; yields (process, url, key)."""
    out.mkdir(parents=True, exist_ok=True)
    cfg = out / "config.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "extends": str(Path(config or DEFAULT_CONFIG).resolve()),
                "workspace": str(settings.workspace),
                "serving": {"workers": workers},
                "alerts": {"log_path": str(out / "alerts.jsonl")},
                "online": {
                    "sqlite_path": str(out / "online.db"),
                    "redis_prefix": f"{settings.online.redis_prefix}-{out.name}",
                },
            }
        )
    )
    for stale in out.glob("online.db*"):
        stale.unlink()
    keys_file = out / "api_keys.json"
    key = create_key(keys_file, out.name, list(SCOPES), rate_per_s=10 * rate, replace=True)
    url = f"http://127.0.0.1:{port}"
    proc = _start(
        settings,
        cfg,
        "serving.service:Patron",
        port,
        out / "patron.log",
        keys_file=keys_file,
        workers=workers,
        bench_options=False,
    )  # the service as configured: what production runs
    try:
        _wait(url, proc, "/readyz")
        yield proc, url, key
    finally:
        stop_server(proc)


def mixed_stream(settings: Settings, n: int, seed: int) -> tuple[list[str], list[dict], list[dict]]:
    """`n` requests drawn by `soak.mix` (every /events body new), and the seed events that give the new customers a
    live history first: (paths, bodies, seed bodies)."""
    mix = settings.soak.mix
    names = sorted(mix)
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(names), size=n, p=np.array([mix[k] for k in names]) / sum(mix.values()))
    pool = _bodies(settings, int((picks == names.index("events")).sum()) + 1 if "events" in names else 1, seed)
    cursor = dict.fromkeys(names, 0)
    paths, bodies = [], []
    for pick in picks:
        name = names[pick]
        source = pool[name]
        bodies.append(source[cursor[name] % len(source)])
        cursor[name] += 1
        paths.append(PATHS[name])
    return paths, bodies, pool["seed_events"]


def _per_interval(requests: list, paths: list[str], interval_s: float) -> list[dict]:
    """Requests, errors and latency percentiles per interval of planned send time, overall and per endpoint."""
    sent = np.array([r[0] for r in requests])
    latency = np.array([r[1] for r in requests])
    ok = np.array([r[2] for r in requests], dtype=bool)
    endpoint = np.array([paths[r[3]] for r in requests])
    rows = []
    for k in range(int(sent.max() // interval_s) + 1 if len(sent) else 0):
        inside = (sent >= k * interval_s) & (sent < (k + 1) * interval_s)
        row = {
            "interval": k,
            "start_s": k * interval_s,
            "requests": int(inside.sum()),
            "errors": int((inside & ~ok).sum()),
        }
        if inside.any():
            row["p50_ms"], row["p99_ms"] = (round(float(v), 2) for v in np.percentile(latency[inside], [50, 99]))
        for path in sorted(set(paths)):
            here = inside & (endpoint == path)
            if here.any():
                row[f"p99_ms {path}"] = round(float(np.percentile(latency[here], 99)), 2)
        rows.append(row)
    return rows


def memory_growth(samples: list[dict], warmup_s: float) -> dict:
    """Total resident memory at the end of warm-up, at the end and at its peak after; growth relative to warm-up."""
    after = [s for s in samples if s["t_s"] >= warmup_s] or samples[-1:]
    base, last = after[0]["total_mb"], after[-1]["total_mb"]
    peak = max(s["total_mb"] for s in after)
    return {
        "warmup_s": warmup_s,
        "baseline_mb": base,
        "end_mb": last,
        "peak_mb": peak,
        "growth": (last - base) / base,
        "peak_growth": (peak - base) / base,
    }


def _sample(proc: subprocess.Popen, started: float) -> dict:
    per_process = _rss_mb(proc)
    return {
        "t_s": round(time.monotonic() - started, 1),
        "total_mb": round(sum(per_process), 1),
        "processes_mb": [round(x, 1) for x in per_process],
    }


def run_soak(
    settings: Settings,
    config: Path | None,
    minutes: float,
    rate: float | None = None,
    workers: int | None = None,
    interval_s: float | None = None,
    echo: Callable[[str], None] = print,
) -> BenchReport:
    """Start the service, drive the mixed stream for `minutes` from a second process, sample memory; returns the
    report (summary `ok` false when any request failed or memory grew by `soak.max_memory_growth` or more), written
    to WORKSPACE/outputs/bench_soak/soak.md/.json and logged as an MLflow run."""
    soak_started = time.monotonic()
    soak = settings.soak
    rate, workers = rate or soak.rate_per_s, workers or os.cpu_count() or 1
    interval_s = interval_s or soak.interval_s
    seconds = minutes * 60
    out = settings.outputs_dir / "bench_soak"
    out.mkdir(parents=True, exist_ok=True)
    paths, bodies, seeds = mixed_stream(settings, int(rate * seconds), settings.seed)
    stream = out / "stream.json"
    stream.write_text(json.dumps({"paths": paths, "bodies": bodies}))
    with scratch_service(settings, config, workers, soak.port, out, rate) as (proc, url, key):
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
            for body in seeds:
                client.post("/events", json=body).raise_for_status()
            for path, body in list(zip(paths, bodies))[: WARMUP_CALLS * len(PATHS)]:
                if path != "/events":  # each events body is sent once, by the load itself
                    client.post(path, json=body)
        echo(f"soak: {rate:g} requests/s for {minutes:g} min on {workers} workers ({url})")
        started = time.monotonic()
        with (out / "load.json").open("w") as result_file, (out / "load.err").open("w") as err_file:
            # To files, not pipes: a pipe left unread while memory is sampled would block the generator.
            load = subprocess.Popen(
                [sys.executable, "-m", "benchmarks.loadgen", url, str(stream), str(rate), str(seconds)],
                stdout=result_file,
                stderr=err_file,
                cwd=REPO_ROOT,
                env={**os.environ, "PATRON_API_KEY": key},
            )
            samples = [_sample(proc, started)]
            while load.poll() is None:
                time.sleep(soak.sample_s)
                samples.append(_sample(proc, started))
                if len(samples) % max(1, int(interval_s / soak.sample_s)) == 0:
                    echo(f"  {samples[-1]['t_s']:.0f} s: server processes {samples[-1]['total_mb']:.0f} MB")
        if load.returncode != 0:
            raise RuntimeError(f"load generator failed ({load.returncode}): {(out / 'load.err').read_text()[-2000:]}")
    result = json.loads((out / "load.json").read_text())
    memory = memory_growth(samples, soak.warmup_share * seconds)
    summary = {
        "sent": result["sent"],
        "achieved_per_s": round(result["sent"] / result["elapsed_s"], 1),
        "errors": result["errors"],
        "p50_ms": round(float(np.percentile(result["latencies_ms"], 50)), 2),
        "p99_ms": round(float(np.percentile(result["latencies_ms"], 99)), 2),
        "memory_growth": memory["growth"],
        "memory_peak_growth": memory["peak_growth"],
        "ok": result["errors"] == 0 and memory["growth"] < soak.max_memory_growth,
    }
    report = BenchReport(
        name="Soak",
        dataset=str(settings.workspace),
        protocol={
            "minutes": minutes,
            "rate_per_s": rate,
            "workers": workers,
            "mix": soak.mix,
            "interval_s": interval_s,
            "max_memory_growth": soak.max_memory_growth,
        },
        columns=["start_s", "requests", "errors", "p50_ms", "p99_ms", *(f"p99_ms {p}" for p in sorted(set(paths)))],
        rows=_per_interval(result["requests"], paths, interval_s),
        label="interval",
        fingerprint=events_fingerprint(settings),
        seeds={"stream": settings.seed},
        seconds=time.monotonic() - soak_started,
        summary=summary,
        details={"memory": memory, "memory_samples": samples},
        notes=[
            f"{summary['errors']} errors in {summary['sent']} requests; resident memory {memory['growth']:+.1%} "
            f"after warm-up (limit {soak.max_memory_growth:.0%}): {'pass' if summary['ok'] else 'FAIL'}"
        ],
        command=f"patron bench soak --minutes {minutes:g} --rate {rate:g}",
        versions=package_versions(PACKAGES),
    )
    report.write(out, "soak", settings)
    return report


def soak_markdown(report: BenchReport) -> str:
    """The soak's own summary as Markdown: totals, memory, one row per interval."""
    s, p, m = report.summary, report.protocol, report.details["memory"]
    lines = [
        f"# Soak: `{report.command}`",
        "",
        f"{s['sent']} requests ({s['achieved_per_s']}/s achieved, mix {p['mix']}) on "
        f"{p['workers']} workers: **{s['errors']} errors**, p50 {s['p50_ms']} ms, "
        f"p99 {s['p99_ms']} ms. Resident memory of the server processes: {m['baseline_mb']:.0f} MB after "
        f"warm-up ({m['warmup_s']:.0f} s), {m['end_mb']:.0f} MB at the end (**{m['growth']:+.1%}**), peak "
        f"{m['peak_mb']:.0f} MB ({m['peak_growth']:+.1%}); limit {p['max_memory_growth']:.0%}. "
        f"Verdict: **{'pass' if s['ok'] else 'FAIL'}**.",
        "",
        "| from (s) | requests | errors | p50 ms | p99 ms | p99 by endpoint (ms) |",
        "|---|---|---|---|---|---|",
    ]
    for row in report.rows:
        by = ", ".join(f"{k.split(' ')[1]} {v}" for k, v in row.items() if k.startswith("p99_ms "))
        lines.append(
            f"| {row['start_s']:.0f} | {row['requests']} | {row['errors']} | {row.get('p50_ms', '')} | "
            f"{row.get('p99_ms', '')} | {by} |"
        )
    return "\n".join(lines) + "\n"
