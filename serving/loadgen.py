"""Open-loop load generator (its own process): POST bodies at a fixed rate, latency counted from the planned send."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

import aiohttp


async def drive(url: str, bodies: list[dict], rate: float, duration_s: float) -> dict:
    """Send round-robin `bodies` to `url` at `rate` per second for `duration_s`; latencies in ms and error count."""
    n = int(rate * duration_s)
    payloads = [json.dumps(b).encode() for b in bodies]
    latencies: list[float] = []
    errors = 0
    headers = {"Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=512)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def one(i: int, planned: float) -> None:
            nonlocal errors
            try:
                async with session.post(url, data=payloads[i % len(payloads)], headers=headers) as r:
                    await r.read()
                    ok = r.status == 200
            except (aiohttp.ClientError, asyncio.TimeoutError):
                ok = False
            # From the planned send time: a stalled server delays later requests, and that delay counts.
            latencies.append((time.perf_counter() - planned) * 1000)
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
    return {"latencies_ms": latencies, "errors": errors, "sent": n, "elapsed_s": elapsed}


def main() -> None:
    """`python -m serving.loadgen URL BODIES.json RATE SECONDS` prints the result as JSON."""
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("bodies")
    p.add_argument("rate", type=float)
    p.add_argument("seconds", type=float)
    a = p.parse_args()
    with open(a.bodies) as fh:
        bodies = json.load(fh)
    json.dump(asyncio.run(drive(a.url, bodies, a.rate, a.seconds)), sys.stdout)


if __name__ == "__main__":
    main()
