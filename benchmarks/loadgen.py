"""Open-loop load generator (its own process): POST bodies at a fixed rate, latency counted from the planned send."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time

import aiohttp


async def drive(url: str, bodies: list[dict], rate: float, duration_s: float, paths: list[str] | None = None) -> dict:
    """Send round-robin `bodies` to `url` at `rate` per second for `duration_s`; latencies in ms and error count.
    With `paths` (as long as `bodies`), body i goes to `url + paths[i]`: a mixed stream. `requests` lists each
    request's planned send time (s from the start), latency (ms), success and path index."""
    n = int(rate * duration_s)
    payloads = [json.dumps(b).encode() for b in bodies]
    targets = [url + p for p in paths] if paths else [url]
    latencies: list[float] = []
    requests: list[tuple[float, float, bool, int]] = []
    errors = 0
    headers = {"Content-Type": "application/json"}
    if os.environ.get("PATRON_API_KEY"):  # from the environment, not argv: other users can read argv
        headers["Authorization"] = f"Bearer {os.environ['PATRON_API_KEY']}"
    connector = aiohttp.TCPConnector(limit=512)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def one(i: int, planned: float) -> None:
            nonlocal errors
            try:
                async with session.post(
                    targets[i % len(targets)], data=payloads[i % len(payloads)], headers=headers
                ) as r:
                    await r.read()
                    ok = r.status == 200
            except (aiohttp.ClientError, TimeoutError):
                ok = False
            # From the planned send time: a stalled server delays later requests, and that delay counts.
            latencies.append((time.perf_counter() - planned) * 1000)
            requests.append((planned - start, latencies[-1], ok, i % len(targets)))
            errors += not ok

        start = time.perf_counter()
        tasks = []
        for i in range(n):
            planned = start + i / rate
            delay = planned - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, planned)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    return {"latencies_ms": latencies, "errors": errors, "sent": n, "elapsed_s": elapsed, "requests": requests}


def main() -> None:
    """`python -m benchmarks.loadgen URL BODIES.json RATE SECONDS` prints the result as JSON (BODIES.json: a list of
    bodies, or {"paths": [...], "bodies": [...]} for a mixed stream)."""
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("bodies")
    p.add_argument("rate", type=float)
    p.add_argument("seconds", type=float)
    a = p.parse_args()
    with open(a.bodies) as fh:
        bodies = json.load(fh)
    paths = None
    if isinstance(bodies, dict):
        paths, bodies = bodies["paths"], bodies["bodies"]
    json.dump(asyncio.run(drive(a.url, bodies, a.rate, a.seconds, paths)), sys.stdout)


if __name__ == "__main__":
    main()
